//! Developer tasks: `cargo xtask setup`, `run`, `test`, `lint`, `image`, `bench`.
//!
//! `setup` installs what building the kernel (eBPF) path needs; `run` and
//! `test` call it and then run plain cargo with that path required, so a
//! fresh machine needs nothing but this repository, rustup and (for the
//! Debian packages) root.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod image;

/// The nightly that builds the BPF target. It must carry the LLVM that
/// bpf-linker links against (22); newer nightlies fail at link time. Same
/// value as in toptraffic-userspace/build.rs.
const NIGHTLY: &str = "nightly-2026-05-20";
/// llvm-22-dev is what bpf-linker builds against; bpftool and iproute2 are
/// for inspecting pinned maps and for the tests' network namespaces;
/// influxdb (influxd 1.6, which the line protocol parser is checked
/// against), prometheus-alertmanager, haproxy, nginx with its Lua module and
/// redis-server are the real components the end-to-end tests drive;
/// tcpdump captures what a daemon receives, for the replay's test.
const DEBS: &[&str] = &[
    "llvm-22-dev",
    "bpftool",
    "iproute2",
    "libcap2-bin",
    "prometheus-alertmanager",
    "haproxy",
    "nginx-light",
    "libnginx-mod-http-lua",
    "redis-server",
    "influxdb",
    "tcpdump",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Makes toptraffic-userspace/build.rs fail instead of quietly building the
/// daemon without its kernel path.
const REQUIRE_EBPF: &str = "TOPTRAFFIC_REQUIRE_EBPF";
const BPFFS: &str = "/sys/fs/bpf";

#[derive(Parser)]
#[command(name = "xtask", about = "toptraffic developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the kernel (eBPF) build needs: the pinned nightly with
    /// rust-src, Debian's LLVM 22, bpftool and iproute2 (as root), and
    /// bpf-linker in target/tools. Skips what is already there.
    Setup {
        /// Only report what is missing and what would be run.
        #[arg(long)]
        dry_run: bool,
    },
    /// Build the release binary and run the daemon (embedded default config
    /// unless arguments say otherwise, e.g. `-- --config my.toml`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test of the workspace, end-to-end tests included.
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// rustfmt's check and clippy with warnings denied: the host crates (the
    /// benches' code included) and the kernel programs, which only the BPF
    /// target compiles, with the pinned nightly's clippy.
    Lint,
    /// Build a static (musl) toptraffic into an image FROM scratch with
    /// podman (storage under target/image), save it as an OCI archive and
    /// print its size.
    Image {
        /// Then run the image tests (tests/ops.rs, `image_*`).
        #[arg(long)]
        test: bool,
        /// Only remove target/image and its podman storage.
        #[arg(long)]
        clean: bool,
    },
    /// Run a benchmark of docs/BENCHMARKS.md: load, micro, drain, parse,
    /// soak, flood or all (arguments after the name go to the bench program).
    Bench {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Cargo for the workspace's own builds, which must include the kernel path.
fn cargo_ebpf() -> Command {
    let mut c = cargo();
    c.env(REQUIRE_EBPF, "1");
    c
}

fn status(mut cmd: Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn run(args: Vec<String>) -> Result<()> {
    setup(false)?;
    let mut build = cargo_ebpf();
    build.args(["build", "--release", "-p", "toptraffic"]);
    status(build)?;
    let mut run = Command::new(workspace_root().join("target/release/toptraffic"));
    run.arg("run").args(args);
    status(run)
}

fn test(args: Vec<String>) -> Result<()> {
    setup(false)?;
    mount_bpffs();
    let mut t = cargo_ebpf();
    // The benches' smoke checks run too, with the code they need.
    t.args(["test", "--workspace", "--all-targets"])
        .args(["--features", "toptraffic/bench"])
        .args(&args);
    status(t)?;
    // Doc tests are not part of --all-targets.
    let mut d = cargo_ebpf();
    d.args(["test", "--workspace", "--doc"]);
    status(d)
}

fn lint() -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    status(fmt)?;
    // clippy runs build.rs, which builds the kernel programs.
    setup(false)?;
    let mut host = cargo_ebpf();
    host.args(["clippy", "--workspace", "--all-targets"]).args([
        "--features",
        "toptraffic/bench",
        "--",
        "-D",
        "warnings",
    ]);
    status(host)?;
    // A minimal profile has no clippy; a component of the pinned nightly
    // leaves the machine's other toolchains as they are.
    let mut component = Command::new("rustup");
    component.args(["component", "add", "clippy", "--toolchain", NIGHTLY]);
    status(component)?;
    // Through rustup, not $CARGO: that is the stable toolchain's cargo.
    let mut kernel = Command::new("rustup");
    kernel
        .current_dir(workspace_root().join("toptraffic-ebpf"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target/ebpf-clippy"),
        )
        .args(["run", NIGHTLY, "cargo", "clippy", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"]);
    status(kernel)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where bpf-linker is installed; build.rs looks in its `bin`.
fn tools_root() -> PathBuf {
    workspace_root().join("target/tools")
}

fn setup(dry_run: bool) -> Result<()> {
    // In this order: bpf-linker builds against the LLVM that apt installs.
    setup_nightly(dry_run)?;
    setup_debs(dry_run)?;
    setup_bpf_linker(dry_run)
}

/// Prints the one line a setup step ends with.
fn done(step: &str, what: &str, started: Instant) {
    eprintln!(
        "setup: {step}: {what} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

enum NightlyState {
    Ready,
    NoRustSrc,
    Absent,
}

fn nightly_state() -> NightlyState {
    let out = Command::new("rustup")
        .args(["run", NIGHTLY, "rustc", "--print", "sysroot"])
        // A check must never download a toolchain.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let sysroot = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
                NightlyState::Ready
            } else {
                NightlyState::NoRustSrc
            }
        }
        _ => NightlyState::Absent,
    }
}

fn setup_nightly(dry_run: bool) -> Result<()> {
    let started = Instant::now();
    let step = format!("{NIGHTLY} with rust-src");
    let mut cmd = Command::new("rustup");
    match nightly_state() {
        NightlyState::Ready => {
            done(&step, "present, skipped", started);
            return Ok(());
        }
        NightlyState::NoRustSrc => {
            cmd.args(["component", "add", "rust-src", "--toolchain", NIGHTLY]);
        }
        NightlyState::Absent => {
            // Exactly this dated nightly: plain `nightly` (or `rustup
            // update`) would bring one whose LLVM bpf-linker cannot read.
            // No self-update: where it is enabled, rustup would replace
            // itself with whatever its server offers, even an older one.
            cmd.args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]);
            cmd.args(["--component", "rust-src", "--no-self-update"]);
        }
    }
    if dry_run {
        done(&step, &format!("missing, would run {cmd:?}"), started);
        return Ok(());
    }
    status(cmd).context("rustup is needed to install the eBPF toolchain")?;
    if !matches!(nightly_state(), NightlyState::Ready) {
        bail!("{NIGHTLY} with rust-src is still missing after installing it");
    }
    done(&step, "installed", started);
    Ok(())
}

/// Whether `dpkg -s` output says the package is installed (not merely known,
/// e.g. removed with its config files left).
fn deb_installed(dpkg_status: &str) -> bool {
    dpkg_status.lines().any(|l| {
        l.strip_prefix("Status:")
            .is_some_and(|s| s.trim() == "install ok installed")
    })
}

/// Which of `debs` dpkg does not show installed.
fn missing_debs(debs: &[&'static str]) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for deb in debs {
        let out = Command::new("dpkg")
            .args(["-s", deb])
            .output()
            .context("running dpkg: xtask installs Debian packages and needs Debian or Ubuntu")?;
        if !(out.status.success() && deb_installed(&String::from_utf8_lossy(&out.stdout))) {
            missing.push(*deb);
        }
    }
    Ok(missing)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}

fn setup_debs(dry_run: bool) -> Result<()> {
    let started = Instant::now();
    let step = format!("Debian packages {}", DEBS.join(" "));
    let missing = missing_debs(DEBS)?;
    if missing.is_empty() {
        done(&step, "installed, skipped", started);
        return Ok(());
    }
    let by_hand = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if dry_run {
        let what = format!("missing {}, would run {by_hand}", missing.join(" "));
        done(&step, &what, started);
        return Ok(());
    }
    if !is_root() {
        bail!(
            "Debian packages {} are missing and installing them needs root: run `{by_hand}` as root, then this again",
            missing.join(" ")
        );
    }
    apt_install(&missing)?;
    done(&step, &format!("installed {}", missing.join(" ")), started);
    Ok(())
}

/// apt-get update, then install `debs` (as root).
fn apt_install(debs: &[&str]) -> Result<()> {
    let mut update = Command::new("apt-get");
    update
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive");
    // A failing third-party source fails the update; the packages may still
    // come from Debian's, so only the install decides.
    if let Err(e) = status(update) {
        eprintln!("xtask: warning: {e:#}; trying the install anyway");
    }
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(debs)
        .env("DEBIAN_FRONTEND", "noninteractive");
    status(install)
}

/// Whether `bpf-linker --version` output (`bpf-linker 0.13.0`) is the pin.
fn is_pinned_linker(version_output: &str) -> bool {
    version_output.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION)
}

fn bpf_linker_ready(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && is_pinned_linker(&String::from_utf8_lossy(&o.stdout)))
}

fn setup_bpf_linker(dry_run: bool) -> Result<()> {
    let started = Instant::now();
    let step = format!("bpf-linker {BPF_LINKER_VERSION}");
    let root = tools_root();
    let bin = root.join("bin/bpf-linker");
    if bpf_linker_ready(&bin) {
        done(
            &step,
            &format!("present in {}, skipped", bin.display()),
            started,
        );
        return Ok(());
    }
    let mut cmd = cargo();
    // Default features build against LLVM 23 bindings, which then fail on
    // real programs; --force replaces a broken or different binary.
    cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--locked", "--force", "--no-default-features"])
        .args(["--features", "llvm-22", "--root"])
        .arg(&root)
        .env("LLVM_PREFIX", LLVM_PREFIX);
    if dry_run {
        done(&step, &format!("missing, would run {cmd:?}"), started);
        return Ok(());
    }
    status(cmd)?;
    if !bpf_linker_ready(&bin) {
        bail!(
            "{} --version does not print {BPF_LINKER_VERSION} after installing it",
            bin.display()
        );
    }
    done(&step, &format!("installed into {}", bin.display()), started);
    Ok(())
}

/// Kernel tests pin maps under bpffs, which a fresh machine has not mounted.
/// The daemon mounts it itself when it can, so failing here is only a warning.
fn mount_bpffs() {
    let mounted = Command::new("mountpoint")
        .args(["-q", BPFFS])
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        return;
    }
    if !is_root() {
        eprintln!(
            "xtask: warning: bpffs is not mounted at {BPFFS} and mounting it needs root: `mount -t bpf bpf {BPFFS}`"
        );
        return;
    }
    match Command::new("mount")
        .args(["-t", "bpf", "bpf", BPFFS])
        .status()
    {
        Ok(s) if s.success() => eprintln!("xtask: mounted bpffs at {BPFFS}"),
        Ok(s) => eprintln!("xtask: warning: `mount -t bpf bpf {BPFFS}` failed: {s}"),
        Err(e) => eprintln!("xtask: warning: `mount -t bpf bpf {BPFFS}` failed: {e}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.task {
        Task::Setup { dry_run } => setup(dry_run),
        Task::Run { args } => run(args),
        Task::Test { args } => test(args),
        Task::Lint => lint(),
        Task::Image { test, clean } => image::image(test, clean),
        Task::Bench { name, args } => bench::bench(&name, args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_lines() {
        let installed = "Package: bpftool\nStatus: install ok installed\nPriority: optional\n";
        assert!(deb_installed(installed));
        let config_only = "Package: bpftool\nStatus: deinstall ok config-files\n";
        assert!(!deb_installed(config_only));
        assert!(!deb_installed(""));
    }

    #[test]
    fn bpf_linker_version_lines() {
        assert!(is_pinned_linker("bpf-linker 0.13.0\n"));
        assert!(!is_pinned_linker("bpf-linker 0.13.1\n"));
        assert!(!is_pinned_linker("bpf-linker 0.9.13\n"));
        assert!(!is_pinned_linker(""));
    }
}
