//! One client process of a safety run: loops on the lock (acquire, fenced writes, release)
//! and campaigns in the election, recording every operation, until SIGTERM.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tooz::{ConnectionState, Coordinator, DriverUrl, Error, LockGuard};
use tooz_safety::{Kind, Op};

use crate::fenced::{Outcome, Writer};
use crate::record::Recorder;
use crate::rng::Rng;
use crate::wrap::{Mutant, WrappedDriver};

/// How a client is told to run.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Driver URL.
    #[arg(long)]
    pub url: String,
    /// Process number (1..).
    #[arg(long)]
    pub process: u32,
    /// How many times this process was started before.
    #[arg(long, default_value_t = 0)]
    pub incarnation: u32,
    /// The fenced register's address.
    #[arg(long)]
    pub register: std::net::SocketAddr,
    /// History file (appended to).
    #[arg(long)]
    pub history: PathBuf,
    /// Lock name.
    #[arg(long, default_value = "safety-lock")]
    pub lock: String,
    /// Election group.
    #[arg(long, default_value = "safety-group")]
    pub group: String,
    /// The lock's time-to-live (long holds last three of these).
    #[arg(long, value_parser = crate::parse_secs)]
    pub ttl: Duration,
    /// Seeded bug.
    #[arg(long)]
    pub mutant: Option<Mutant>,
    /// Seed of this process's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Longest any one operation may take before it is recorded as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a client holds: `writes` fenced writes, `pause` apart.
#[derive(Debug, Clone, Copy)]
struct Hold {
    writes: u32,
    pause: Duration,
}

/// The main lock's holds: three writes over ~20 ms, for many operations per run.
const SHORT: Hold = Hold {
    writes: 3,
    pause: Duration::from_millis(7),
};

/// Runs one client until SIGTERM (which the kernel also sends if the runner dies).
pub async fn run(args: ClientArgs) -> Result<(), String> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets this process's parent-death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let rec = Arc::new(
        Recorder::open(&args.history, args.process, args.incarnation)
            .map_err(|e| format!("history {}: {e}", args.history.display()))?,
    );
    let member = format!("p{}-{}", args.process, args.incarnation);
    let coord = connect(&args, &member).await?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
        }
        let _ = stop_tx.send(true);
    });
    record_suspensions(&coord, rec.clone());
    let _ = coord.join_group_create(args.group.as_str(), "").await;
    let election = tokio::spawn(campaign_loop(
        coord.clone(),
        rec.clone(),
        args.group.clone(),
        Writer::new(args.register, args.process),
        stop.clone(),
    ));
    let long_lock = format!("{}-long", args.lock);
    let long = Hold {
        writes: 24,
        pause: (args.ttl * 6 + Duration::from_secs(6)) / 24,
    };
    tokio::join!(
        lock_loop(&coord, &rec, &args, &args.lock, SHORT, stop.clone()),
        lock_loop(&coord, &rec, &args, &long_lock, long, stop),
    );
    let _ = tokio::time::timeout(Duration::from_secs(3), election).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), coord.stop()).await;
    Ok(())
}

/// The coordinator over the wrapped driver: SIGUSR1 starves its keep-alive (heartbeats and
/// lock refreshes wait), SIGUSR2 feeds it again.
async fn connect(args: &ClientArgs, member: &str) -> Result<Coordinator, String> {
    let starved = Arc::new(AtomicBool::new(false));
    for (kind, value) in [
        (SignalKind::user_defined1(), true),
        (SignalKind::user_defined2(), false),
    ] {
        let mut signals = signal(kind).map_err(|e| e.to_string())?;
        let starved = starved.clone();
        tokio::spawn(async move {
            while signals.recv().await.is_some() {
                starved.store(value, Ordering::Release);
            }
        });
    }
    let url = DriverUrl::parse(&args.url).map_err(|e| e.to_string())?;
    let inner = tooz::drivers::build(&url, &member.into()).map_err(|e| e.to_string())?;
    let mutant = args.mutant.filter(|m| *m != Mutant::D);
    let driver = WrappedDriver::new(inner, mutant, starved);
    let coord = Coordinator::with_driver(Arc::new(driver), member).map_err(|e| e.to_string())?;
    // The server may be down (a fault): keep trying for a while.
    for _ in 0..60 {
        match coord.start().await {
            Ok(()) => return Ok(coord),
            Err(error) => {
                eprintln!("start: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Err("cannot start the coordinator".into())
}

fn record_suspensions(coord: &Coordinator, rec: Arc<Recorder>) {
    let mut states = coord.connection_states();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = *states.borrow_and_update();
            if matches!(state, ConnectionState::Suspended | ConnectionState::Lost) {
                rec.info(Op::Suspended);
            }
        }
    });
}

/// `Unknown` for errors that leave the outcome open, `Fail` for a plain "not acquired".
fn acquire_outcome(error: &Error) -> Kind {
    match error {
        Error::OperationTimedOut(_) | Error::LockAcquireFailed { .. } => Kind::Fail,
        _ => Kind::Unknown,
    }
}

/// Loops on lock `name`: acquire, `shape` of fenced writes, release; until told to stop.
async fn lock_loop(
    coord: &Coordinator,
    rec: &Arc<Recorder>,
    args: &ClientArgs,
    name: &str,
    shape: Hold,
    mut stop: watch::Receiver<bool>,
) {
    let lock = coord.lock(name);
    let mut writer = Writer::new(args.register, args.process);
    let mut rng = Rng::new(args.seed ^ u64::from(args.process) << 32 ^ u64::from(args.incarnation));
    let ignore_loss = args.mutant == Some(Mutant::D);
    while !*stop.borrow() {
        let acquire = Op::Acquire {
            lock: name.to_string(),
            token: None,
        };
        let id = rec.invoke(acquire.clone());
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(OP_TIMEOUT, lock.acquire_timeout(args.ttl * 2)) => outcome,
            _ = stop.changed() => {
                // A dropped acquire leaves the lock not taken.
                rec.complete(id, Kind::Fail, acquire);
                break;
            }
        };
        let guard = match outcome {
            Ok(Ok(guard)) => guard,
            Ok(Err(error)) => {
                eprintln!("acquire {name}: {error}");
                rec.complete(id, acquire_outcome(&error), acquire);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(_) => {
                rec.complete(id, Kind::Unknown, acquire);
                continue;
            }
        };
        let token = guard.fencing_token().0;
        rec.complete(
            id,
            Kind::Ok,
            Op::Acquire {
                lock: name.to_string(),
                token: Some(token),
            },
        );
        let held = Holding {
            guard: &guard,
            name,
            token,
            ignore_loss,
        };
        if !held.hold(shape, &mut writer, rec, stop.clone()).await {
            rec.info(Op::Lost {
                lock: name.to_string(),
                token,
            });
        }
        let id = rec.invoke(Op::Release {
            lock: name.to_string(),
            token,
            released: None,
        });
        let (kind, released) = match tokio::time::timeout(OP_TIMEOUT, guard.release()).await {
            Ok(Ok(released)) => (Kind::Ok, Some(released)),
            _ => (Kind::Unknown, None),
        };
        rec.complete(
            id,
            kind,
            Op::Release {
                lock: name.to_string(),
                token,
                released,
            },
        );
        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
    }
}

/// A held acquisition, as the client loop sees it.
struct Holding<'a> {
    guard: &'a LockGuard,
    name: &'a str,
    token: u64,
    /// Mutant D: the client ignores its lost signal.
    ignore_loss: bool,
}

impl Holding<'_> {
    /// Holds for `shape`'s writes (fewer once told to stop); `false` as soon as the lost
    /// signal fires (a client that ignores it writes on regardless).
    async fn hold(
        &self,
        shape: Hold,
        writer: &mut Writer,
        rec: &Recorder,
        mut stop: watch::Receiver<bool>,
    ) -> bool {
        let heeds_loss = !self.ignore_loss;
        for _ in 0..shape.writes {
            if heeds_loss && self.guard.lost_reason().is_some() {
                return false;
            }
            write(rec, writer, self.name, self.token).await;
            tokio::select! {
                _ = tokio::time::sleep(shape.pause) => {}
                _ = self.guard.lost(), if heeds_loss => return false,
                _ = stop.changed() => return true,
            }
        }
        true
    }
}

async fn write(rec: &Recorder, writer: &mut Writer, resource: &str, token: u64) {
    let op = Op::Write {
        resource: resource.to_string(),
        token,
    };
    let id = rec.invoke(op.clone());
    let kind = match writer.write(resource, token).await {
        Outcome::Accepted => Kind::Ok,
        Outcome::Refused => Kind::Fail,
        Outcome::Unknown => Kind::Unknown,
    };
    rec.complete(id, kind, op);
}

async fn campaign_loop(
    coord: Coordinator,
    rec: Arc<Recorder>,
    group: String,
    mut writer: Writer,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let leadership = tokio::select! {
            outcome = coord.campaign(group.as_str()) => outcome,
            _ = stop.changed() => return,
        };
        let Ok(leadership) = leadership else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let term = leadership.term().0;
        rec.info(Op::Elected {
            group: group.clone(),
            term,
        });
        for _ in 0..3 {
            if leadership.lost_reason().is_some() {
                break;
            }
            write(&rec, &mut writer, &group, term).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        rec.info(Op::Resigned {
            group: group.clone(),
            term,
        });
        let _ = tokio::time::timeout(OP_TIMEOUT, leadership.resign()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
