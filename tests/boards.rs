//! Every board profile is complete and agrees with its configuration, and
//! every board configuration is one the node accepts.
#![allow(clippy::disallowed_methods)] // Reads the board files.

use std::collections::HashMap;
use std::path::Path;

const TARGETS: [&str; 3] = [
    "aarch64-unknown-linux-gnu",
    "aarch64-unknown-linux-musl",
    "armv7-unknown-linux-gnueabihf",
];

fn profile(dir: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir.join("profile.env")).expect("profile.env");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn board_profiles_are_complete_and_match_their_configuration() {
    let mut boards = 0;
    for entry in std::fs::read_dir("boards").expect("boards/") {
        let dir = entry.expect("entry").path();
        if !dir.join("profile.env").exists() {
            continue;
        }
        boards += 1;
        let p = profile(&dir);
        let name = dir.display();
        for key in [
            "BOARD_NAME",
            "TARGET",
            "BOARD_RUSTFLAGS",
            "SERIAL",
            "DATA_DIR",
            "CONFIG_DIR",
            "CONSOLE_TRUSTED",
        ] {
            assert!(p.contains_key(key), "{name}: {key} missing");
        }
        assert!(TARGETS.contains(&p["TARGET"].as_str()), "{name}: target");
        assert!(
            ["yes", "no"].contains(&p["CONSOLE_TRUSTED"].as_str()),
            "{name}: CONSOLE_TRUSTED is yes or no"
        );
        let cfg = outpost::shell::config_file::load(&dir.join("outpost.toml"))
            .unwrap_or_else(|e| panic!("{name}/outpost.toml: {e}"));
        assert_eq!(cfg.data_dir, Path::new(&p["DATA_DIR"]), "{name}: data_dir");
        assert_eq!(
            cfg.admin.serial.as_deref(),
            Some(Path::new(&p["SERIAL"])),
            "{name}: serial device"
        );
        assert_eq!(
            cfg.admin.serial_trusted,
            p["CONSOLE_TRUSTED"] == "yes",
            "{name}: [admin] serial_trusted agrees with CONSOLE_TRUSTED"
        );
    }
    assert!(boards >= 3, "at least the three boards the docs list");
}
