//! `cargo xtask image`: the daemon as a static musl binary in an image
//! `FROM scratch`, built offline with podman, and saved as an OCI archive.
//!
//! Everything podman keeps (storage, run state, its tmp dir) lives under
//! `target/image/podman`, so nothing outside the repository is touched;
//! `cargo xtask image --clean` removes it. The image holds the binary (whose
//! embedded default config is all it needs to run) and the build host's CA
//! bundle, for the HTTPS alert sinks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{apt_install, cargo_ebpf, is_root, missing_debs, setup, status, workspace_root};

/// A static target: the image has no libc to link against.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// podman builds and runs the image; runc because crun (podman's default)
/// refuses hybrid cgroup hierarchies; musl-tools is the C compiler ring
/// needs for the musl target; ca-certificates is the bundle the image ships.
const DEBS: &[&str] = &[
    "podman",
    "runc",
    "musl-tools",
    "ca-certificates",
    "libcap2-bin",
];
/// Where Debian's ca-certificates writes the bundle, and where
/// rustls-platform-verifier (through rustls-native-certs) looks first.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// podman's default seccomp profile, from which the image's is derived.
const PODMAN_SECCOMP: &str = "/usr/share/containers/seccomp.json";
pub const IMAGE_NAME: &str = "localhost/toptraffic";

/// Where the image build keeps its files, all under target/image.
pub struct Paths {
    pub dir: PathBuf,
    pub context: PathBuf,
    pub podman: PathBuf,
    pub archive: PathBuf,
    pub seccomp: PathBuf,
}

impl Paths {
    pub fn new(version: &str) -> Paths {
        let dir = workspace_root().join("target/image");
        Paths {
            context: dir.join("context"),
            podman: dir.join("podman"),
            archive: dir.join(format!("toptraffic-{version}.oci.tar")),
            seccomp: dir.join("seccomp.json"),
            dir,
        }
    }
}

/// podman with its storage, run state and tmp dir under `root`.
pub fn podman(root: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("runroot"))
        .arg("--tmpdir")
        .arg(root.join("tmp"));
    c
}

/// The daemon's version, which tags the image (the manifests in
/// deploy/kubernetes name the same tag).
pub fn version() -> Result<String> {
    let manifest = workspace_root().join("toptraffic-userspace/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    package_version(&text).with_context(|| format!("no version in {}", manifest.display()))
}

/// The `version = "..."` of a manifest's [package] section.
fn package_version(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if in_package {
            if let Some(v) = line.strip_prefix("version") {
                let v = v.trim_start().strip_prefix('=')?.trim();
                return Some(v.trim_matches('"').to_string());
            }
        }
    }
    None
}

fn ensure_debs() -> Result<()> {
    let missing = missing_debs(DEBS)?;
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "Debian packages {} are missing and installing them needs root: run `apt-get install -y --no-install-recommends {}` as root",
            missing.join(" "),
            missing.join(" ")
        );
    }
    apt_install(&missing)
}

fn ensure_musl_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == MUSL_TARGET)
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", MUSL_TARGET]);
    status(add)
}

/// Builds the static binary; build.rs still builds and embeds the kernel
/// programs for the BPF target (aya-build derives bpfel from the target's
/// endianness, which musl shares with the host).
fn build_binary() -> Result<PathBuf> {
    let mut build = cargo_ebpf();
    build.args([
        "build",
        "--release",
        "-p",
        "toptraffic",
        "--target",
        MUSL_TARGET,
    ]);
    // cc looks for x86_64-linux-musl-gcc, which Debian calls musl-gcc.
    if std::env::var_os("CC_x86_64_unknown_linux_musl").is_none() {
        build.env("CC_x86_64_unknown_linux_musl", "musl-gcc");
    }
    status(build)?;
    Ok(workspace_root().join(format!("target/{MUSL_TARGET}/release/toptraffic")))
}

const CONTAINERFILE: &str = r#"# Written by `cargo xtask image`.
FROM scratch
COPY toptraffic /usr/local/bin/toptraffic
# The build host's CA bundle (Debian's ca-certificates), found by
# rustls-platform-verifier; mount another over it for a private CA.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENTRYPOINT ["/usr/local/bin/toptraffic"]
# The embedded default config; `podman run IMAGE run --config ...` etc.
CMD ["run"]
"#;

/// The binary's file capabilities, which the layer keeps (as an xattr):
/// what a non-root container may use, permitted only. With the effective
/// bit, exec would fail outright in a container granted fewer of them; the
/// daemon raises what it is permitted itself.
const FILE_CAPS: &str = "cap_bpf,cap_perfmon,cap_net_admin+p";

/// Fills the build context: the binary without its debug info (symbols
/// stay, for backtraces) and with its file capabilities, the CA bundle and
/// the Containerfile.
fn stage(binary: &Path, paths: &Paths, version: &str) -> Result<()> {
    let ctx = &paths.context;
    if ctx.exists() {
        std::fs::remove_dir_all(ctx).with_context(|| format!("removing {}", ctx.display()))?;
    }
    std::fs::create_dir_all(ctx)?;
    let mut strip = Command::new("strip");
    strip
        .arg("--strip-debug")
        .arg("-o")
        .arg(ctx.join("toptraffic"))
        .arg(binary);
    status(strip)?;
    let mut setcap = Command::new("setcap");
    setcap.arg(FILE_CAPS).arg(ctx.join("toptraffic"));
    status(setcap)?;
    std::fs::copy(CA_BUNDLE, ctx.join("ca-certificates.crt"))
        .with_context(|| format!("copying {CA_BUNDLE}"))?;
    let label = format!(
        "LABEL org.opencontainers.image.title=\"toptraffic\" org.opencontainers.image.version=\"{version}\"\n"
    );
    std::fs::write(ctx.join("Containerfile"), format!("{CONTAINERFILE}{label}"))?;
    Ok(())
}

/// podman's default seccomp profile with bpf() allowed to a container that
/// holds CAP_BPF: the default allows it only with CAP_SYS_ADMIN, so with
/// just the three capabilities bpf() fails with EPERM.
pub fn seccomp_profile(default: &serde_json::Value) -> Result<serde_json::Value> {
    let mut p = default.clone();
    let calls = p["syscalls"]
        .as_array_mut()
        .context("the seccomp profile has no syscalls list")?;
    let mut found = false;
    for c in calls.iter_mut() {
        if let Some(names) = c["names"].as_array_mut() {
            let before = names.len();
            names.retain(|n| n != "bpf");
            found |= names.len() != before;
        }
    }
    if !found {
        bail!("the seccomp profile does not mention bpf");
    }
    calls.retain(|c| c["names"].as_array().is_none_or(|n| !n.is_empty()));
    calls.push(serde_json::json!({
        "names": ["bpf"], "action": "SCMP_ACT_ALLOW",
        "includes": {"caps": ["CAP_BPF"]}, "excludes": {}
    }));
    calls.push(serde_json::json!({
        "names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
        "includes": {}, "excludes": {"caps": ["CAP_BPF"]}
    }));
    Ok(p)
}

fn write_seccomp(paths: &Paths) -> Result<()> {
    let text = std::fs::read_to_string(PODMAN_SECCOMP)
        .with_context(|| format!("reading {PODMAN_SECCOMP}"))?;
    let default: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {PODMAN_SECCOMP}"))?;
    let p = seccomp_profile(&default)?;
    std::fs::write(&paths.seccomp, serde_json::to_string_pretty(&p)?)?;
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn image(test: bool, clean: bool) -> Result<()> {
    let version = version()?;
    let paths = Paths::new(&version);
    if clean {
        return clean_storage(&paths);
    }
    setup(false)?;
    ensure_debs()?;
    ensure_musl_target()?;
    let binary = build_binary()?;
    stage(&binary, &paths, &version)?;
    write_seccomp(&paths)?;

    let tag = format!("{IMAGE_NAME}:{version}");
    let mut build = podman(&paths.podman);
    // FROM scratch: nothing to pull, and nothing may be.
    build
        .args(["build", "--pull=never", "--file"])
        .arg(paths.context.join("Containerfile"))
        .args(["--tag", &tag])
        .arg(&paths.context);
    status(build)?;
    if paths.archive.exists() {
        std::fs::remove_file(&paths.archive)?;
    }
    let mut save = podman(&paths.podman);
    save.args(["save", "--format", "oci-archive", "--output"])
        .arg(&paths.archive)
        .arg(&tag);
    status(save)?;

    let out = podman(&paths.podman)
        .args(["image", "inspect", "--format", "{{.Size}}", &tag])
        .output()?;
    let size: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("podman image inspect printed no size")?;
    let bin = std::fs::metadata(paths.context.join("toptraffic"))?.len();
    let ca = std::fs::metadata(paths.context.join("ca-certificates.crt"))?.len();
    let archive = std::fs::metadata(&paths.archive)?.len();
    println!(
        "image {tag}: {} (binary {}, CA bundle {})",
        mib(size),
        mib(bin),
        mib(ca)
    );
    println!(
        "OCI archive: {} ({})",
        paths.archive.display(),
        mib(archive)
    );
    println!("seccomp profile for podman: {}", paths.seccomp.display());
    println!(
        "run it: podman --root {0}/root --runroot {0}/runroot --tmpdir {0}/tmp run --rm --network=host --cap-drop=all --cap-add=CAP_BPF,CAP_PERFMON --security-opt seccomp={1} -v /sys/fs/bpf:/sys/fs/bpf {tag} run --mode kernel",
        paths.podman.display(),
        paths.seccomp.display()
    );
    if test {
        let mut t = cargo_ebpf();
        t.args(["test", "-p", "toptraffic", "--test", "ops", "--"])
            .args(["--ignored", "--nocapture", "image_"]);
        status(t)?;
    }
    Ok(())
}

/// Removes the build's podman state (`system reset` unmounts and deletes
/// its storage) and the build directory.
fn clean_storage(paths: &Paths) -> Result<()> {
    if paths.podman.exists() {
        let mut reset = podman(&paths.podman);
        reset.args(["system", "reset", "--force"]);
        status(reset)?;
    }
    if paths.dir.exists() {
        std::fs::remove_dir_all(&paths.dir)
            .with_context(|| format!("removing {}", paths.dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_comes_from_the_package_section() {
        let m = "[package]\nname = \"toptraffic\"\nversion = \"0.3.1\"\n\n[dependencies]\nversion = \"9\"\n";
        assert_eq!(package_version(m).as_deref(), Some("0.3.1"));
        assert_eq!(package_version("[dependencies]\nversion = \"1\"\n"), None);
    }

    #[test]
    fn seccomp_profile_gates_bpf_by_cap_bpf_only() {
        let default = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["bpf", "perf_event_open"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["bpf"], "action": "SCMP_ACT_ERRNO",
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
        ]});
        let p = seccomp_profile(&default).unwrap();
        let calls = p["syscalls"].as_array().unwrap();
        let bpf: Vec<_> = calls
            .iter()
            .filter(|c| c["names"].as_array().unwrap().iter().any(|n| n == "bpf"))
            .collect();
        assert_eq!(bpf.len(), 2);
        assert_eq!(bpf[0]["includes"]["caps"][0], "CAP_BPF");
        assert_eq!(bpf[1]["excludes"]["caps"][0], "CAP_BPF");
        // perf_event_open keeps its CAP_SYS_ADMIN gate; the emptied rule goes.
        assert_eq!(calls.len(), 4);
        assert!(seccomp_profile(&serde_json::json!({"syscalls": []})).is_err());
    }
}
