//! `etcd3://`: the lease-KV store over etcd's gRPC API (the `etcd-client` crate). Several
//! endpoints are balanced, and a call fails over to another when one is down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use futures::StreamExt;

use super::Config;
use crate::driver::Driver;
use crate::drivers::lease_kv::store::{
    Cmp, Compare, Event, KeyRange, Kv, KvStore, Op, OpResult, Read, Target, TxnResult, WatchStream,
};
use crate::drivers::lease_kv::{LeaseKvDriver, Settings};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::types::DriverFacts;
use crate::url::DriverUrl;

pub(crate) const FACTS: DriverFacts = super::FACTS;

pub(crate) fn build(url: &DriverUrl, member: &Id) -> Result<Arc<dyn Driver>> {
    let (cfg, facts) = Config::parse(url, "etcd3", false)?;
    if cfg.tls.is_some() && !cfg!(feature = "etcd3-tls") {
        return Err(Error::DriverUnavailable {
            scheme: "etcd3".to_string(),
            why: "built without TLS (enable the cargo feature `etcd3-tls` of the tooz crate)"
                .into(),
        });
    }
    let settings = Settings {
        scheme: "etcd3",
        facts,
        ttl: cfg.ttl,
        namespace: cfg.namespace.clone(),
    };
    Ok(Arc::new(LeaseKvDriver::new(
        settings,
        GrpcStore::new(cfg),
        member,
    )))
}

/// The gRPC transport: one client per endpoint, made when first needed; calls go to the
/// current endpoint and move on to the next when it cannot be reached.
pub(crate) struct GrpcStore {
    cfg: Config,
    links: tokio::sync::Mutex<Links>,
}

struct Links {
    started: bool,
    clients: Vec<Option<Arc<Client>>>,
    current: usize,
}

/// The clients of this process, by runtime, endpoint and settings: coordinators of one
/// runtime that talk to one endpoint alike share one HTTP/2 connection (10,000 coordinators
/// need not open 10,000 connections). A client's connection is driven by a task of the
/// runtime that made it, so runtimes do not share. An entry lives as long as a coordinator
/// uses it.
static SHARED: Mutex<BTreeMap<String, Weak<Client>>> = Mutex::new(BTreeMap::new());

/// Whether a call failed before its request could reach the server (so trying it on
/// another endpoint cannot apply it twice).
fn unsent(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable && status.message().contains("connect")
        }
        _ => false,
    }
}

impl GrpcStore {
    fn new(cfg: Config) -> Self {
        let clients = vec![None; cfg.endpoints.len()];
        GrpcStore {
            cfg,
            links: tokio::sync::Mutex::new(Links {
                started: false,
                clients,
                current: 0,
            }),
        }
    }

    /// The current endpoint and its client.
    async fn client(&self) -> Result<(usize, Client)> {
        let mut links = self.links.lock().await;
        if !links.started {
            return Err(Error::NotStarted);
        }
        let current = links.current;
        if let Some(client) = &links.clients[current] {
            return Ok((current, Client::clone(client)));
        }
        let client = self.shared_client(&self.cfg.endpoints[current]).await?;
        links.clients[current] = Some(client.clone());
        Ok((current, Client::clone(&client)))
    }

    /// Leaves endpoint `index` for the next one, forgetting its client (a connection the
    /// network broke is not always recovered by the channel).
    async fn move_on(&self, index: usize) {
        let mut links = self.links.lock().await;
        if links.current == index {
            if let Some(broken) = links.clients[index].take() {
                // Nobody else gets it either: the next caller connects anew.
                let mut shared = SHARED.lock().unwrap();
                let key = self.share_key(&self.cfg.endpoints[index]);
                if shared
                    .get(&key)
                    .is_some_and(|w| w.as_ptr() == Arc::as_ptr(&broken))
                {
                    shared.remove(&key);
                }
            }
            links.current = (index + 1) % links.clients.len();
        }
    }

    /// What makes two coordinators' clients interchangeable (never shown: it holds the
    /// password).
    fn share_key(&self, endpoint: &str) -> String {
        format!(
            "{}|{endpoint}|{:?}|{:?}|{:?}|{:?}",
            tokio::runtime::Handle::current().id(),
            self.cfg.user,
            self.cfg.tls,
            self.cfg.call_timeout,
            self.cfg.ttl
        )
    }

    /// The process's client of `endpoint` with these settings, made if there is none.
    async fn shared_client(&self, endpoint: &str) -> Result<Arc<Client>> {
        let key = self.share_key(endpoint);
        if let Some(client) = SHARED.lock().unwrap().get(&key).and_then(Weak::upgrade) {
            return Ok(client);
        }
        let client = Arc::new(self.new_client(endpoint).await?);
        let mut shared = SHARED.lock().unwrap();
        shared.retain(|_, w| w.strong_count() > 0);
        shared.insert(key, Arc::downgrade(&client));
        Ok(client)
    }

    /// Runs `op` on the current endpoint's client; a call that could not reach its endpoint
    /// is tried on the next, once around the list.
    async fn with_client<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let mut tries = self.cfg.endpoints.len();
        loop {
            let (index, client) = self.client().await?;
            match op(client).await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let retry = unsent(&error);
                    let error = self.classify(error);
                    if matches!(error, Error::Connection(_) | Error::OperationTimedOut(_)) {
                        self.move_on(index).await;
                    }
                    tries -= 1;
                    if !retry || tries == 0 {
                        return Err(error);
                    }
                }
            }
        }
    }

    async fn new_client(&self, endpoint: &str) -> Result<Client> {
        let scheme = if self.cfg.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let connect = Client::connect([format!("{scheme}://{endpoint}")], Some(self.options()?));
        tokio::time::timeout(self.cfg.call_timeout, connect)
            .await
            .map_err(|_| {
                Error::OperationTimedOut(format!(
                    "etcd {endpoint}: no connection within {:?}",
                    self.cfg.call_timeout
                ))
            })?
            .map_err(|e| self.classify(e))
    }

    fn classify(&self, error: etcd_client::Error) -> Error {
        let servers = self.cfg.endpoints.join(",");
        match error {
            etcd_client::Error::GRpcStatus(status) => match status.code() {
                // The channel's own failures (a connection it could not make or keep).
                tonic::Code::Unknown | tonic::Code::Unavailable
                    if status.message().contains("transport error")
                        || status.message().contains("not ready") =>
                {
                    Error::Connection(format!("etcd {servers}: {}", status.message()))
                }
                // tonic's own deadline (the call timeout) ends a call as "cancelled".
                tonic::Code::Cancelled if status.message().contains("Timeout expired") => {
                    Error::OperationTimedOut(format!("etcd {servers}: {}", status.message()))
                }
                tonic::Code::Unavailable => {
                    Error::Connection(format!("etcd {servers}: {}", status.message()))
                }
                tonic::Code::DeadlineExceeded => {
                    Error::OperationTimedOut(format!("etcd {servers}: {}", status.message()))
                }
                _ => Error::Backend {
                    driver: "etcd3",
                    message: format!("etcd {servers}: {}", status.message()),
                },
            },
            etcd_client::Error::TransportError(e) => {
                Error::Connection(format!("etcd {servers}: {e}"))
            }
            etcd_client::Error::IoError(e) => Error::Connection(format!("etcd {servers}: {e}")),
            other => Error::Backend {
                driver: "etcd3",
                message: format!("etcd {servers}: {other}"),
            },
        }
    }

    fn options(&self) -> Result<ConnectOptions> {
        let mut options = ConnectOptions::new()
            .with_timeout(self.cfg.call_timeout)
            .with_connect_timeout(self.cfg.call_timeout.min(Duration::from_secs(5)))
            // HTTP/2 pings find a dead connection (a cut network) in time for the session to
            // be renewed on a new one.
            .with_keep_alive(
                (self.cfg.ttl / 4).max(Duration::from_millis(500)),
                self.cfg.call_timeout,
            )
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &self.cfg.user {
            options = options.with_user(user.clone(), password.clone());
        }
        #[cfg(feature = "etcd3-tls")]
        if let Some(tls) = &self.cfg.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        Ok(options)
    }
}

#[cfg(feature = "etcd3-tls")]
fn tls_options(tls: &super::Tls) -> Result<etcd_client::TlsOptions> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            crate::drivers::common::errors::io_backend(
                "etcd3",
                &format!("reading {}", path.display()),
                e,
            )
        })
    };
    let mut options = etcd_client::TlsOptions::new();
    if let Some(ca) = &tls.ca_cert {
        options = options.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}

fn kv(kv: &KeyValue) -> Kv {
    Kv {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

fn get_options(read: &Read) -> GetOptions {
    let mut options = GetOptions::new();
    if let Some(end) = &read.range.end {
        options = options.with_range(end.clone());
    }
    if read.limit > 0 {
        options = options.with_limit(read.limit);
    }
    if read.max_create_revision > 0 {
        options = options.with_max_create_revision(read.max_create_revision);
    }
    if read.newest_first {
        options = options.with_sort(SortTarget::Create, SortOrder::Descend);
    }
    if read.keys_only {
        options = options.with_keys_only();
    }
    options
}

fn compare(c: Compare) -> EtcdCompare {
    let op = match c.cmp {
        Cmp::Equal => CompareOp::Equal,
        Cmp::Greater => CompareOp::Greater,
    };
    let key = c.range.key;
    let compare = match c.target {
        Target::CreateRevision(r) => EtcdCompare::create_revision(key, op, r),
        Target::Value(v) => EtcdCompare::value(key, op, v),
    };
    match c.range.end {
        Some(end) => compare.with_range(end),
        None => compare,
    }
}

fn op(op: Op) -> TxnOp {
    match op {
        Op::Put { key, value, lease } => {
            let options = (lease != 0).then(|| PutOptions::new().with_lease(lease));
            TxnOp::put(key, value, options)
        }
        Op::Delete(range) => {
            let options = range.end.map(|end| DeleteOptions::new().with_range(end));
            TxnOp::delete(range.key, options)
        }
        Op::Get(read) => {
            let options = get_options(&read);
            TxnOp::get(read.range.key, Some(options))
        }
    }
}

#[async_trait]
impl KvStore for GrpcStore {
    async fn connect(&self) -> Result<()> {
        self.links.lock().await.started = true;
        // A first call, so that an unreachable cluster fails the start.
        let probe = self
            .with_client(|mut c| async move {
                let options = GetOptions::new().with_count_only();
                c.get(b"tooz/".to_vec(), Some(options)).await
            })
            .await;
        if probe.is_err() {
            self.close().await;
        }
        probe.map(drop)
    }

    async fn close(&self) {
        let mut links = self.links.lock().await;
        links.started = false;
        links.clients.iter_mut().for_each(|c| *c = None);
    }

    async fn grant(&self, ttl: Duration) -> Result<i64> {
        let secs = ttl.as_secs().max(1) as i64;
        let granted = self
            .with_client(|mut c| async move { c.lease_grant(secs, None).await })
            .await?;
        Ok(granted.id())
    }

    async fn keep_alive(&self, lease: i64) -> Result<bool> {
        let renewed = self
            .with_client(|mut c| async move {
                let renew = async {
                    let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    Ok(stream.message().await?.map(|reply| reply.ttl()))
                };
                match renew.await {
                    // The client's word for a lease the server no longer has.
                    Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(Some(0)),
                    other => other,
                }
            })
            .await?;
        match renewed {
            Some(ttl) if ttl > 0 => return Ok(true),
            Some(_) => {}
            None => {
                return Err(Error::Connection(format!(
                    "etcd {}: the lease keep-alive stream closed",
                    self.cfg.endpoints.join(",")
                )))
            }
        }
        // Not renewed: gone only if the server says so when asked (TTL -1).
        let reply = self
            .with_client(|mut c| async move { c.lease_time_to_live(lease, None).await })
            .await?;
        Ok(reply.ttl() > 0)
    }

    async fn revoke(&self, lease: i64) -> Result<()> {
        self.with_client(|mut c| async move {
            match c.lease_revoke(lease).await {
                // Already gone: what revoking wanted.
                Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => {
                    Ok(())
                }
                other => other.map(drop),
            }
        })
        .await
    }

    async fn range(&self, read: Read) -> Result<(Vec<Kv>, i64)> {
        let reply = self
            .with_client(|mut c| {
                let (key, options) = (read.range.key.clone(), get_options(&read));
                async move { c.get(key, Some(options)).await }
            })
            .await?;
        let revision = reply.header().map_or(0, |h| h.revision());
        Ok((reply.kvs().iter().map(kv).collect(), revision))
    }

    async fn txn(
        &self,
        when: Vec<Compare>,
        then: Vec<Op>,
        otherwise: Vec<Op>,
    ) -> Result<TxnResult> {
        let txn = Txn::new()
            .when(when.into_iter().map(compare).collect::<Vec<_>>())
            .and_then(then.into_iter().map(op).collect::<Vec<_>>())
            .or_else(otherwise.into_iter().map(op).collect::<Vec<_>>());
        let reply = self
            .with_client(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let results = reply
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Put(_) | TxnOpResponse::Txn(_) => OpResult::Put,
                TxnOpResponse::Delete(d) => OpResult::Deleted(d.deleted()),
                TxnOpResponse::Get(g) => OpResult::Got(g.kvs().iter().map(kv).collect()),
            })
            .collect();
        Ok(TxnResult {
            succeeded: reply.succeeded(),
            revision: reply.header().map_or(0, |h| h.revision()),
            results,
        })
    }

    async fn watch(&self, range: KeyRange, from: i64) -> Result<WatchStream> {
        let mut options = WatchOptions::new();
        if from > 0 {
            options = options.with_start_revision(from);
        }
        if let Some(end) = range.end {
            options = options.with_range(end);
        }
        let mut stream = self
            .with_client(|mut c| {
                let (key, options) = (range.key.clone(), options.clone());
                async move { c.watch(key, Some(options)).await }
            })
            .await?;
        let servers = self.cfg.endpoints.join(",");
        // The server's confirmation: from then on, no change is missed.
        let created = tokio::time::timeout(self.cfg.call_timeout, stream.message())
            .await
            .map_err(|_| {
                Error::OperationTimedOut(format!("etcd {servers}: the watch was not confirmed"))
            })?;
        match created {
            Ok(Some(reply)) if reply.created() && !reply.canceled() => {}
            Ok(Some(reply)) => {
                let why = format!("watch refused ({})", reply.cancel_reason());
                return Err(Error::Connection(format!("etcd {servers}: {why}")));
            }
            Ok(None) => {
                let why = "the watch stream closed".to_string();
                return Err(Error::Connection(format!("etcd {servers}: {why}")));
            }
            Err(e) => return Err(self.classify(e)),
        }
        // The stream keeps its sender alive (dropping it ends the watch on the server).
        let events = futures::stream::unfold(Some(stream), move |state| {
            let servers = servers.clone();
            async move {
                let mut stream = state?;
                loop {
                    let next = stream.message().await;
                    match next {
                        Ok(Some(reply)) if reply.canceled() || reply.compact_revision() > 0 => {
                            let why = format!(
                                "etcd {servers}: watch canceled ({})",
                                reply.cancel_reason()
                            );
                            return Some((Err(Error::Connection(why)), None));
                        }
                        Ok(Some(reply)) => {
                            if reply.events().is_empty() {
                                continue;
                            }
                            let events = reply
                                .events()
                                .iter()
                                .filter_map(|e| {
                                    let kv = kv(e.kv()?);
                                    Some(match e.event_type() {
                                        EventType::Put => Event::Put(kv),
                                        EventType::Delete => Event::Delete(kv),
                                    })
                                })
                                .collect();
                            return Some((Ok(events), Some(stream)));
                        }
                        Ok(None) => {
                            let why = format!("etcd {servers}: watch stream closed");
                            return Some((Err(Error::Connection(why)), None));
                        }
                        Err(e) => {
                            let why = format!("etcd {servers}: watch broke: {e}");
                            return Some((Err(Error::Connection(why)), None));
                        }
                    }
                }
            }
        });
        Ok(events.boxed())
    }
}
