//! Builds the kernel programs (`toptraffic-ebpf`) for the BPF target and lets
//! `src/ingest/kernel/path.rs` embed the object.
//!
//! Cargo cannot build one crate of a workspace for another target with
//! `-Z build-std` as a dependency (rust-lang/cargo#12375), so this script runs
//! cargo itself through `aya-build`, with the pinned nightly that the BPF
//! target needs and `bpf-linker` on PATH. `cargo xtask` installs both (into
//! rustup and `target/tools/bin`), and this script looks there too, so a
//! plain `cargo build` works once xtask has run.
//!
//! Without those tools the daemon is built without its kernel path, and says
//! so: here as a cargo warning, at run time when asked for `--mode kernel`.
//! `TOPTRAFFIC_REQUIRE_EBPF=1` (set by xtask and CI) makes that an error.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The nightly that builds the BPF target with bpf-linker 0.13 (LLVM 22).
const NIGHTLY: &str = "nightly-2026-05-20";

fn main() {
    println!("cargo:rustc-check-cfg=cfg(toptraffic_ebpf)");
    println!("cargo:rerun-if-env-changed=TOPTRAFFIC_REQUIRE_EBPF");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let tools = root.join("target/tools/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = vec![tools.clone()];
    paths.extend(std::env::split_paths(&path));
    let joined = std::env::join_paths(paths).unwrap();
    // aya-build runs cargo and rustc, which run bpf-linker from PATH.
    std::env::set_var("PATH", &joined);

    let required = std::env::var("TOPTRAFFIC_REQUIRE_EBPF").is_ok_and(|v| v == "1");
    if let Some(missing) = missing_tools(&joined) {
        let msg = format!(
            "building WITHOUT the kernel (eBPF) path: {missing}. `cargo xtask setup` installs what is missing."
        );
        if required {
            panic!("{msg}");
        }
        println!("cargo:warning={msg}");
        return;
    }

    let ebpf_dir = root.join("toptraffic-ebpf");
    let package = aya_build::Package {
        name: "toptraffic-ebpf",
        root_dir: ebpf_dir.to_str().unwrap(),
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(NIGHTLY)) {
        panic!("building the kernel programs failed: {e:#}");
    }
    println!("cargo:rustc-cfg=toptraffic_ebpf");
}

/// What the BPF build lacks, if anything.
fn missing_tools(path: &std::ffi::OsStr) -> Option<String> {
    if !on_path(path, "bpf-linker") {
        return Some("bpf-linker is not on PATH nor in target/tools/bin".into());
    }
    let sysroot = Command::new("rustup")
        .args(["run", NIGHTLY, "rustc", "--print", "sysroot"])
        .output();
    match sysroot {
        Ok(o) if o.status.success() => {
            let root = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let src = Path::new(&root).join("lib/rustlib/src/rust/library/core");
            if !src.exists() {
                return Some(format!(
                    "the {NIGHTLY} toolchain lacks the rust-src component"
                ));
            }
            None
        }
        _ => Some(format!("the {NIGHTLY} toolchain is not installed")),
    }
}

fn on_path(path: &std::ffi::OsStr, bin: &str) -> bool {
    std::env::split_paths(path).any(|d| d.join(bin).is_file())
}
