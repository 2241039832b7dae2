//! The Debian package (`make deb`, deploy/deb/build.sh) built from this build's binaries: its
//! files and control fields, its systemd unit through `systemd-analyze verify` (and a broken copy
//! that verify must refuse), the extracted `corral` and its man pages and bash completion, the
//! default config against corrald's own flags; and corrald's systemd notifications (READY=1,
//! WATCHDOG=1) as systemd's socket receives them. Installing it in a clean Debian root is
//! `make check-long`'s (deploy/deb/install-test.sh).

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use corral_tests::{bin, wait_until};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package from the binaries next to this test (target/debug) into `dir`.
fn build_deb(dir: &Path) -> PathBuf {
    let bindir = bin("corral").parent().expect("the binaries' dir").to_path_buf();
    let out = run(Command::new("bash")
        .arg(repo().join("deploy/deb/build.sh"))
        .arg(&bindir)
        .arg(dir)
        .env("CORRAL_DEB_COMPRESSION", "gzip"));
    let deb = PathBuf::from(text(&out).trim());
    assert!(deb.exists(), "build.sh printed {deb:?}, which does not exist");
    deb
}

/// `systemd-analyze verify` of `unit`, with the extracted package's man pages for its
/// Documentation= lines: whether it exited 0 and said nothing, and what it said. verify only
/// warns about a directive it cannot parse, so a clean unit is one it has nothing to say about.
fn verify(unit: &Path, man: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("MANPATH", man)
        .output()
        .expect("systemd-analyze (deploy/deps.sh installs systemd)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && said.trim().is_empty(), said)
}

#[test]
fn the_package_has_its_files_and_a_unit_that_verifies() {
    let dir = tempfile::Builder::new().prefix("corral-deb-").tempdir().expect("temp dir");
    let deb = build_deb(dir.path());
    let version = env!("CARGO_PKG_VERSION");
    assert!(deb.file_name().unwrap().to_str().unwrap().starts_with(&format!("corral_{version}_")), "{deb:?}");

    // Its files, as dpkg-deb lists them ("-rwxr-xr-x root/root 123 date ./usr/bin/corral").
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let entries: Vec<(&str, &str, &str)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], f[1], f[f.len() - 1].trim_start_matches('.'))
        })
        .collect();
    let has = |path: &str| entries.iter().find(|(_, _, p)| p.trim_end_matches('/') == path).copied();
    for path in [
        "/usr/bin/corral",
        "/usr/bin/corrald",
        "/lib/systemd/system/corrald.service",
        "/etc/corral/corrald.toml",
        "/usr/share/bash-completion/completions/corral",
        "/usr/share/zsh/vendor-completions/_corral",
        "/usr/share/fish/vendor_completions.d/corral.fish",
        "/usr/share/man/man1/corral.1.gz",
        "/usr/share/man/man1/corral-vm-migrate.1.gz",
        "/usr/share/man/man1/corral-host-maintenance.1.gz",
        "/usr/share/man/man8/corrald.8.gz",
    ] {
        let (mode, owner, _) = has(path).unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"));
        assert_eq!(owner, "root/root", "{path}");
        let want = if path.starts_with("/usr/bin/") { "-rwxr-xr-x" } else { "-rw-r--r--" };
        assert_eq!(mode, want, "{path}");
    }
    assert_eq!(has("/var/lib/corral").map(|e| e.0), Some("drwx--x--x"), "{listing}");
    // The web console, where corrald looks for it by default, when it is built (`make web`).
    if repo().join("web/dist/index.html").exists() {
        assert!(has("/usr/share/corral/web/index.html").is_some(), "{listing}");
    }
    assert!(has("/usr/share/man/man1/corral-man.1.gz").is_none(), "the hidden command has no page");

    // Its control fields.
    let field = |name: &str| text(&run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name))).trim().to_string();
    assert_eq!(field("Package"), "corral");
    assert_eq!(field("Version"), version);
    let depends = field("Depends");
    for dep in ["libvirt0", "qemu-utils", "genisoimage", "libc6"] {
        assert!(depends.split(", ").any(|d| d.split(' ').next() == Some(dep)), "Depends: {depends}");
    }
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(std::fs::read_to_string(control.join("conffiles")).unwrap().trim(), "/etc/corral/corrald.toml");
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("daemon-reload"), "{postinst}");
    let commands = postinst.lines().filter(|l| !l.trim_start().starts_with('#'));
    assert!(
        commands.clone().all(|l| !l.contains("start") && !l.contains("enable")),
        "not started on install: {postinst}"
    );

    // Extracted: the binaries run, the unit verifies with ExecStart pointing at them.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let shown = text(&run(Command::new(root.join("usr/bin/corral")).arg("--version")));
    assert_eq!(shown.trim(), format!("corral {version}"));
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/corrald.service")).unwrap();
    for line in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "ProtectSystem=strict", "NoNewPrivileges=yes"] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "{line} not in the unit:\n{unit}");
    }
    assert!(unit.contains("ExecStart=/usr/bin/corrald --config /etc/corral/corrald.toml\n"), "{unit}");
    let units = dir.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let here = units.join("corrald.service");
    let corrald = root.join("usr/bin/corrald");
    std::fs::write(&here, unit.replace("ExecStart=/usr/bin/corrald", &format!("ExecStart={}", corrald.display())))
        .unwrap();
    let man = root.join("usr/share/man");
    let (clean, said) = verify(&here, &man);
    assert!(clean, "systemd-analyze verify of the packaged unit: {said}");

    // verify checks for real: a directive it cannot parse, a missing binary, a man page that
    // is not there.
    let broken = [
        unit.replace("ProtectSystem=strict", "ProtectSystem=very"),
        unit.replace("ExecStart=/usr/bin/corrald", &format!("ExecStart={}", root.join("usr/bin/nothing").display())),
        unit.replace("Restart=on-failure", "Restart=sometimes"),
    ];
    for broken in broken {
        std::fs::write(&here, &broken).unwrap();
        let (clean, said) = verify(&here, &man);
        assert!(!clean, "verify accepted a broken unit:\n{broken}");
        eprintln!("    verify refused a broken unit: {}", said.trim());
    }
    std::fs::write(&here, unit.replace("ExecStart=/usr/bin/corrald", &format!("ExecStart={}", corrald.display())))
        .unwrap();
    let (clean, _) = verify(&here, &dir.path().join("no-man-pages"));
    assert!(!clean, "verify found man pages that are not there");

    // The man pages render (man-db when it is here; else their roff header).
    let page = root.join("usr/share/man/man1/corral-vm-migrate.1.gz");
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let out = run(Command::new("man").arg("-l").arg(&page).env("MANWIDTH", "100").env("MAN_KEEP_FORMATTING", ""));
        let shown = text(&out);
        assert!(shown.contains("corral-vm-migrate - Live-migrate a running VM to another host"), "{shown}");
        assert!(shown.contains("--wait"), "{shown}");
    } else {
        let out = run(Command::new("gzip").arg("-dc").arg(&page));
        assert!(text(&out).contains(".TH corral-vm-migrate 1"), "{}", text(&out));
    }
    let daemon = run(Command::new("gzip").arg("-dc").arg(root.join("usr/share/man/man8/corrald.8.gz")));
    assert!(text(&daemon).contains(".TH corrald 8"), "{}", text(&daemon));

    // The bash completion loads in bash and completes corral's commands.
    let completion = root.join("usr/share/bash-completion/completions/corral");
    let out = run(Command::new("bash").arg("-c").arg(
        r#"source "$1" && complete -p corral && COMP_WORDS=(corral vm mig) COMP_CWORD=2 && _corral corral mig vm && echo "${COMPREPLY[@]}""#,
    ).arg("bash").arg(&completion));
    let said = text(&out);
    assert!(said.contains("-F _corral corral"), "{said}");
    assert!(said.lines().last().unwrap_or_default().split(' ').any(|w| w == "migrate"), "{said}");

    // The default config names every setting corrald has a flag for, and no other.
    let config = std::fs::read_to_string(root.join("etc/corral/corrald.toml")).unwrap();
    let keys: BTreeSet<String> = config
        .lines()
        .filter_map(|l| l.strip_prefix('#')?.split_once(" = ").map(|(k, _)| k.to_string()))
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(config.lines().all(|l| l.is_empty() || l.starts_with('#')), "every key is commented out:\n{config}");
    let help = text(&run(Command::new(&corrald).arg("--help")));
    let not_settings = ["config", "rejoin", "peer", "token_file", "restore", "force_new_cluster", "help", "version"];
    let flags: BTreeSet<String> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|f| f.trim_end_matches([',', '.', ')']).replace('-', "_"))
        .filter(|f| !f.is_empty() && !not_settings.contains(&f.as_str()))
        .filter(|f| help.contains(&format!("  --{} ", f.replace('_', "-"))))
        .collect();
    assert_eq!(keys, flags, "the default config's keys against corrald --help");
}

/// Kills the child on drop, also when the test fails.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn corrald_tells_systemd_when_it_serves_and_that_it_is_alive() {
    let dir = tempfile::Builder::new().prefix("corral-notify-").tempdir_in("/tmp").expect("temp dir");
    let socket_path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    systemd.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let listen_file = dir.path().join("listen");
    // The file the package installs as /etc/corral/corrald.toml, with the flags a test needs.
    // systemd names the process the watchdog is for (WATCHDOG_PID): the shell becomes corrald.
    let child = Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
        .arg(bin("corrald"))
        .arg("--config")
        .arg(repo().join("deploy/corrald.toml"))
        .args(["--name", "host1", "--listen", "127.0.0.1:0", "--libvirt-uri", "test:///default"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen-file")
        .arg(&listen_file)
        // What systemd sets for Type=notify with WatchdogSec=400ms.
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn corrald");
    let mut corrald = Reap(child);

    let mut said: Vec<String> = Vec::new();
    wait_until(Duration::from_secs(30), "READY=1 and then three WATCHDOG=1", || {
        let mut buf = [0u8; 4096];
        if let Ok(n) = systemd.recv(&mut buf) {
            said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if let Ok(Some(status)) = corrald.0.try_wait() {
            panic!("corrald exited ({status}); it had said {said:?}");
        }
        let ready = said.iter().position(|m| m.lines().any(|l| l == "READY=1"));
        let pings = ready.map_or(0, |r| said[r..].iter().filter(|m| m.lines().any(|l| l == "WATCHDOG=1")).count());
        if pings >= 3 {
            Ok(())
        } else {
            Err(format!("{said:?}"))
        }
    });
    // READY=1 came once the port was bound and written (the listen file is there to read).
    let address = std::fs::read_to_string(&listen_file).expect("the listen file, written before READY=1");
    assert!(address.trim().starts_with("127.0.0.1:"), "{address}");
    assert!(said[0].lines().any(|l| l == "READY=1"), "READY=1 comes first: {said:?}");

    // SIGTERM: STOPPING=1 on its way out.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(corrald.0.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    wait_until(Duration::from_secs(30), "STOPPING=1", || {
        let mut buf = [0u8; 4096];
        match systemd.recv(&mut buf) {
            Ok(n) if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "STOPPING=1") => Ok(()),
            Ok(n) => Err(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => Err(e.to_string()),
        }
    });
}
