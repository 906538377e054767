//! History JSON lines and the fenced register.

use tooz_safety::{
    read_jsonl, read_register_jsonl, write_jsonl, write_register_jsonl, Event, FaultClass,
    FencedRegister, Kind, Op,
};

fn ev(time_ns: u64, process: u32, op_id: u64, kind: Kind, op: Op) -> Event {
    Event {
        time_ns,
        process,
        op_id,
        kind,
        op,
    }
}

fn every_variant() -> Vec<Event> {
    let lock = || "a".to_owned();
    vec![
        ev(
            1,
            1,
            1,
            Kind::Invoke,
            Op::Acquire {
                lock: lock(),
                token: None,
            },
        ),
        ev(
            2,
            1,
            1,
            Kind::Ok,
            Op::Acquire {
                lock: lock(),
                token: Some(u64::MAX),
            },
        ),
        ev(
            3,
            1,
            2,
            Kind::Invoke,
            Op::Write {
                resource: lock(),
                token: 7,
            },
        ),
        ev(
            4,
            1,
            2,
            Kind::Fail,
            Op::Write {
                resource: lock(),
                token: 7,
            },
        ),
        ev(
            5,
            1,
            0,
            Kind::Info,
            Op::Lost {
                lock: lock(),
                token: 7,
            },
        ),
        ev(6, 1, 0, Kind::Info, Op::Suspended),
        ev(
            7,
            1,
            3,
            Kind::Invoke,
            Op::Release {
                lock: lock(),
                token: 7,
                released: None,
            },
        ),
        ev(
            8,
            1,
            3,
            Kind::Ok,
            Op::Release {
                lock: lock(),
                token: 7,
                released: Some(false),
            },
        ),
        ev(
            9,
            2,
            0,
            Kind::Info,
            Op::Elected {
                group: "g".into(),
                term: 3,
            },
        ),
        ev(
            10,
            2,
            0,
            Kind::Info,
            Op::Resigned {
                group: "g".into(),
                term: 3,
            },
        ),
        ev(11, 0, 0, Kind::Info, Op::Crashed { target: 2 }),
        ev(
            12,
            0,
            0,
            Kind::Info,
            Op::Fault {
                class: FaultClass::PauseKeepalive,
                target: Some(1),
                detail: "for 3s".into(),
            },
        ),
        ev(
            13,
            0,
            0,
            Kind::Info,
            Op::Heal {
                class: FaultClass::PauseKeepalive,
                target: Some(1),
            },
        ),
        ev(
            14,
            0,
            0,
            Kind::Info,
            Op::Heal {
                class: FaultClass::ServerRestart,
                target: None,
            },
        ),
        ev(
            15,
            3,
            9,
            Kind::Unknown,
            Op::Acquire {
                lock: lock(),
                token: None,
            },
        ),
    ]
}

#[test]
fn jsonl_round_trip_keeps_every_variant() {
    let history = every_variant();
    let text = write_jsonl(&history);
    assert_eq!(text.lines().count(), history.len());
    assert!(text.ends_with('\n'));
    let first = text.lines().nth(1).unwrap();
    assert_eq!(
        first,
        r#"{"time_ns":2,"process":1,"op_id":1,"kind":"ok","op":{"type":"acquire","lock":"a","token":18446744073709551615}}"#
    );
    assert!(text.contains(r#""class":"pause_keepalive""#));
    assert_eq!(read_jsonl(&text).unwrap(), history);
}

#[test]
fn blank_lines_are_skipped() {
    let text = format!("\n{}\n   \n", write_jsonl(&every_variant()[..2]));
    assert_eq!(read_jsonl(&text).unwrap().len(), 2);
}

#[test]
fn garbage_line_reports_its_number() {
    let good = write_jsonl(&every_variant()[..2]);
    let text = format!("{good}\nnot json at all\n");
    let err = read_jsonl(&text).unwrap_err();
    assert_eq!(err.line, 4);
    assert!(err.to_string().starts_with("line 4: "), "{err}");

    let wrong_type = r#"{"time_ns":1,"process":1,"op_id":1,"kind":"ok","op":{"type":"teleport"}}"#;
    let err = read_jsonl(wrong_type).unwrap_err();
    assert_eq!(err.line, 1);
    assert!(err.message.contains("teleport"), "{}", err.message);

    let negative = r#"{"time_ns":-1,"process":1,"op_id":1,"kind":"ok","op":{"type":"suspended"}}"#;
    assert_eq!(read_jsonl(negative).unwrap_err().line, 1);
}

#[test]
fn register_accepts_tokens_at_least_the_highest() {
    let reg = FencedRegister::new();
    assert!(reg.write("a", 1, 1, 10));
    assert!(reg.write("a", 3, 2, 20));
    assert!(!reg.write("a", 2, 1, 30));
    assert!(reg.write("a", 3, 2, 40));
    assert!(reg.write("b", 1, 1, 50));
    assert_eq!(reg.highest("a"), Some(3));
    assert_eq!(reg.highest("c"), None);
    // The refused write of process 1 does not make it the last writer.
    assert_eq!(reg.last_writer("a"), Some(2));
    assert_eq!(reg.last_writer("c"), None);
    let log = reg.into_log();
    let accepted: Vec<bool> = log.iter().map(|e| e.accepted).collect();
    assert_eq!(accepted, [true, true, false, true, true]);
    assert_eq!((log[2].process, log[2].token, log[2].time_ns), (1, 2, 30));
    let text = write_register_jsonl(&log);
    assert_eq!(read_register_jsonl(&text).unwrap(), log);
    assert_eq!(read_register_jsonl("{}\n").unwrap_err().line, 1);
}

#[test]
fn register_is_shared_between_threads() {
    let reg = FencedRegister::new();
    std::thread::scope(|s| {
        for p in 1..=4u32 {
            let reg = &reg;
            s.spawn(move || {
                for t in 0..100u64 {
                    reg.write("r", t, p, t);
                }
            });
        }
    });
    let log = reg.log();
    assert_eq!(log.len(), 400);
    assert_eq!(reg.highest("r"), Some(99));
    // Accepted tokens are non-decreasing in decision order.
    let accepted: Vec<u64> = log.iter().filter(|e| e.accepted).map(|e| e.token).collect();
    assert!(accepted.windows(2).all(|w| w[0] <= w[1]));
}
