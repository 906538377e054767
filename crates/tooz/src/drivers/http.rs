//! The HTTP/1.1 client of the HTTP-based drivers (etcd's v2 API and JSON gateway, Consul):
//! one pool of keep-alive connections per driver, every request bounded by a timeout (a long
//! poll by its own), JSON in and out, and streamed replies for watches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http_body_util::{BodyExt, BodyStream, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};

/// The connector: plain TCP, or TCP and rustls where TLS is built in.
#[cfg(not(feature = "http-client-tls"))]
type Connector = HttpConnector;
#[cfg(feature = "http-client-tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client of one server (`http://host:port` or `https://host:port`).
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Arc<Pool>,
    base: String,
    timeout: Duration,
    /// Sent when set, as its header (`authorization` unless told otherwise): this client's
    /// own, even where the connections are shared.
    token: Arc<std::sync::RwLock<Option<(&'static str, String)>>>,
}

/// The plain-HTTP clients of this process, by runtime, server and timeout.
static SHARED: Mutex<BTreeMap<String, Weak<Pool>>> = Mutex::new(BTreeMap::new());

/// A hyper client: a pool of keep-alive connections.
type Pool = Client<Connector, Full<Bytes>>;

/// A reply: its status, headers and body.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request body and its media type.
pub(crate) enum Body {
    Empty,
    Json(Vec<u8>),
    Form(String),
    /// Raw bytes (`application/octet-stream`), such as a Consul KV value.
    Bytes(Vec<u8>),
}

fn tcp(timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    connector.enforce_http(false);
    connector
}

impl HttpClient {
    fn with(connector: Connector, base: String, timeout: Duration) -> Self {
        HttpClient {
            client: Arc::new(
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build(connector),
            ),
            base,
            timeout,
            token: Default::default(),
        }
    }

    /// A client of `http://host:port`, each request bounded by `timeout`.
    pub fn plain(host_port: &str, timeout: Duration) -> Self {
        #[cfg(not(feature = "http-client-tls"))]
        let connector = tcp(timeout);
        #[cfg(feature = "http-client-tls")]
        let connector = {
            // Never used for https: a configuration that trusts nothing.
            crate::drivers::tls::ensure_default_provider();
            let nothing = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(nothing)
                .https_or_http()
                .enable_http1()
                .wrap_connector(tcp(timeout))
        };
        let base = format!("http://{host_port}");
        // The coordinators of one runtime share their connections to one server (a
        // connection is driven by a task of the runtime that opened it).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::with(connector, base, timeout);
        };
        let key = format!("{}|{base}|{timeout:?}", runtime.id());
        let mut shared = SHARED.lock().unwrap();
        shared.retain(|_, pool| pool.strong_count() > 0);
        if let Some(client) = shared.get(&key).and_then(Weak::upgrade) {
            return HttpClient {
                client,
                base,
                timeout,
                token: Default::default(),
            };
        }
        let client = Self::with(connector, base, timeout);
        shared.insert(key, Arc::downgrade(&client.client));
        client
    }

    /// A client of `https://host:port` with the TLS configuration `config`.
    #[cfg(feature = "http-client-tls")]
    pub fn tls(host_port: &str, timeout: Duration, config: rustls::ClientConfig) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(tcp(timeout));
        Self::with(connector, format!("https://{host_port}"), timeout)
    }

    /// The server, for messages.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Sends `Authorization: token` from now on.
    pub fn set_token(&self, token: Option<String>) {
        self.set_token_header("authorization", token);
    }

    /// Sends `header: token` from now on (Consul's `X-Consul-Token`).
    pub fn set_token_header(&self, header: &'static str, token: Option<String>) {
        *self.token.write().unwrap() = token.map(|token| (header, token));
    }

    fn request(&self, method: &str, path: &str, body: Body) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        let body = match body {
            Body::Empty => Vec::new(),
            Body::Json(json) => {
                builder = builder.header("content-type", "application/json");
                json
            }
            Body::Form(form) => {
                builder = builder.header("content-type", "application/x-www-form-urlencoded");
                form.into_bytes()
            }
            Body::Bytes(bytes) => {
                builder = builder.header("content-type", "application/octet-stream");
                bytes
            }
        };
        if let Some((header, token)) = self.token.read().unwrap().as_ref() {
            builder = builder.header(*header, token.as_str());
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::InvalidUrl {
                url: self.base.clone(),
                reason: e.to_string(),
            })
    }

    fn connection_error(&self, error: impl std::fmt::Display) -> Error {
        Error::Connection(format!("{}: {error}", self.base))
    }

    fn timed_out(&self, path: &str, timeout: Duration) -> Error {
        Error::OperationTimedOut(format!("{}{path}: no reply within {timeout:?}", self.base))
    }

    /// One request and its whole reply.
    pub async fn call(&self, method: &str, path: &str, body: Body) -> Result<Reply> {
        self.call_within(method, path, body, self.timeout).await
    }

    /// One request and its whole reply, bounded by `timeout` rather than the client's own
    /// (a long poll, which the server holds open on purpose).
    pub async fn call_within(
        &self,
        method: &str,
        path: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<Reply> {
        let request = self.request(method, path, body)?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| self.connection_error(describe(&e)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.connection_error(e))?
                .to_bytes();
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| self.timed_out(path, timeout))?
    }

    /// A request whose reply streams: its head, and the body's chunks as they come (the
    /// wait for the head is bounded; the stream is not).
    pub async fn stream(
        &self,
        method: &str,
        path: &str,
        body: Body,
    ) -> Result<(StatusCode, HeaderMap, BoxStream<'static, Result<Bytes>>)> {
        let request = self.request(method, path, body)?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| self.timed_out(path, self.timeout))?
            .map_err(|e| self.connection_error(describe(&e)))?;
        let (status, headers) = (response.status(), response.headers().clone());
        let base = self.base.clone();
        let chunks = BodyStream::new(response.into_body()).filter_map(move |frame| {
            let item = match frame {
                Ok(frame) => frame.into_data().ok().map(Ok),
                Err(e) => Some(Err(Error::Connection(format!("{base}: {e}")))),
            };
            async move { item }
        });
        Ok((status, headers, chunks.boxed()))
    }
}

/// The error and its causes, in one line ("client error (Connect): connection refused").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
