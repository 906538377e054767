//! Bad input never panics: arbitrary URLs and options, and corrupt stored values planted
//! where the file driver reads them, give a value or a typed error.

mod support;

use proptest::prelude::*;
use sha1::Digest;
use support::TempDir;
use tooz::driver::COMMON_OPTIONS;
use tooz::{Coordinator, DriverUrl, Error};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn sha1_hex(bytes: &[u8]) -> String {
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any text, and URL-shaped text with odd parts, parses or fails with a typed error.
    #[test]
    fn urls_never_panic(
        raw in ".{0,80}",
        scheme in "(zake|memory|file|ipc|redis|zookeeper|kazoo|etcd3\\+http|consul|x)",
        auth in "[a-z:@%]{0,12}",
        rest in "[ -~]{0,60}",
    ) {
        for url in [raw, format!("{scheme}://{auth}{rest}")] {
            if let Ok(parsed) = DriverUrl::parse(&url) {
                let _ = parsed.options("test", COMMON_OPTIONS);
                let _ = parsed.to_string();
            }
            let connected = runtime().block_on(Coordinator::connect(&url, "m"));
            if let Err(error) = connected {
                let _ = error.to_string();
            }
        }
    }

    /// A password never shows in the displayed URL, nor in the error of a bad option.
    #[test]
    fn passwords_never_shown(password in "[A-Za-z0-9]{8,16}", option in "[a-z_]{1,10}") {
        let url = format!("zake://user:{password}@server/?{option}=x&token={password}");
        if let Ok(parsed) = DriverUrl::parse(&url) {
            prop_assert!(!parsed.to_string().contains(&password));
            let debug = format!("{:?}", parsed);
            prop_assert!(!debug.contains(&password));
        }
        if let Err(error) = runtime().block_on(Coordinator::connect(&url, "m")) {
            prop_assert!(!error.to_string().contains(&password), "{}", error);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Garbage in a member record or group metadata file: reads answer or fail typed.
    #[test]
    fn corrupt_file_records_give_typed_errors(garbage in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dir = TempDir::new("tooz-bad-input");
        runtime().block_on(async {
            let coord = Coordinator::connect(&dir.url(), "reader").await.unwrap();
            coord.start().await.unwrap();
            coord.join_group_create("g", ()).await.unwrap();
            let group_dir = dir.0.join("groups").join(sha1_hex(b"g"));
            std::fs::write(group_dir.join(format!("{}.raw", sha1_hex(b"bad"))), &garbage).unwrap();
            let other = dir.0.join("groups").join(sha1_hex(b"bad-group"));
            std::fs::create_dir_all(&other).unwrap();
            std::fs::write(other.join(".metadata"), &garbage).unwrap();

            let members = coord.get_members("g").await.unwrap();
            assert!(members.contains(coord.member_id()));
            match coord.get_member_capabilities("g", "bad").await {
                Ok(_) | Err(Error::Serialization(_)) | Err(Error::MemberNotJoined { .. }) => {}
                Err(other) => panic!("untyped failure: {other}"),
            }
            let _ = coord.get_members_with_capabilities("g").await.unwrap();
            let _ = coord.get_groups().await.unwrap();
            coord.stop().await.unwrap();
        });
    }
}
