//! [`serve`]: the viewer's HTTP server and the sources that feed its
//! [`TraceIndex`].
//!
//! Routes:
//! - `GET /`: the page;
//! - `GET /api/traces?q=&errors=1&sort=start|duration&page=N`: one page of
//!   the list ([`ListPage`](crate::ListPage));
//! - `GET /api/traces/{id}`: one trace's waterfall
//!   ([`TraceIndex::trace_page`]);
//! - `GET /api/version?after=V`: the index's version, answered when it is
//!   not `V` or after 20 s; pages wait on it to update without a reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::receiver::{Receiver, RunningReceiver, SinkError, TraceSink};
use dspans_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::UiError;
use crate::index::TraceIndex;
use crate::page::page_html;
use crate::query::{ListQuery, Sort};

/// How often followed files and the store are read.
const FILE_POLL: Duration = Duration::from_millis(300);
const STORE_POLL: Duration = Duration::from_secs(1);
/// The longest a page's wait for a change is held.
const VERSION_WAIT: Duration = Duration::from_secs(20);

/// What the viewer serves and reads.
#[derive(Clone)]
pub struct UiOptions {
    /// Where the page is served. Default 127.0.0.1:8686.
    pub listen: SocketAddr,
    /// OTLP/gRPC receiver address, if any.
    pub grpc: Option<SocketAddr>,
    /// OTLP/HTTP receiver address, if any.
    pub http: Option<SocketAddr>,
    /// OTLP-JSON lines files, read and followed as they grow.
    pub files: Vec<PathBuf>,
    /// A store and its span ledger's root: its open saved spans are shown
    /// as running.
    pub store: Option<(Arc<dyn Store>, String)>,
}

impl Default for UiOptions {
    fn default() -> Self {
        UiOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8686)),
            grpc: None,
            http: None,
            files: Vec::new(),
            store: None,
        }
    }
}

/// The index and the version pages wait on.
struct Shared {
    index: Mutex<TraceIndex>,
    version: watch::Sender<u64>,
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, TraceIndex> {
        // A panic while holding the lock leaves the index as it was.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self, index: &TraceIndex) {
        self.version.send_replace(index.version());
    }

    fn ingest(&self, request: &ExportTraceServiceRequest) {
        let mut index = self.index();
        if index.ingest(request) > 0 {
            self.changed(&index);
        }
    }
}

/// The OTLP receivers' sink: each request goes into the index.
struct IndexSink(Arc<Shared>);

impl TraceSink for IndexSink {
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        self.0.ingest(&request);
        Ok(())
    }
}

/// A running viewer.
pub struct UiServer {
    addr: SocketAddr,
    receiver: Option<RunningReceiver>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl UiServer {
    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The OTLP/gRPC and OTLP/HTTP addresses bound, when receiving.
    pub fn otlp_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        match &self.receiver {
            Some(r) => (r.grpc_addr(), r.http_addr()),
            None => (None, None),
        }
    }

    /// Finished spans and traces held now.
    pub fn counts(&self) -> (usize, usize) {
        let index = self.shared.index();
        (index.span_count(), index.trace_count())
    }

    /// Stops serving, receiving and reading.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(receiver) = self.receiver {
            let _ = receiver.shutdown().await;
        }
    }
}

/// Starts the viewer: binds `listen` (and the OTLP receivers), reads the
/// files, and follows them and the store until [`UiServer::shutdown`].
pub async fn serve(options: UiOptions) -> Result<UiServer, UiError> {
    let (version, _) = watch::channel(0);
    let shared = Arc::new(Shared {
        index: Mutex::new(TraceIndex::default()),
        version,
    });
    let mut tasks = Vec::new();
    for path in &options.files {
        // A missing file is an error at start, not a silent empty view.
        std::fs::metadata(path).map_err(|source| UiError::File {
            path: path.clone(),
            source,
        })?;
        tasks.push(tokio::spawn(follow_file(shared.clone(), path.clone())));
    }
    if let Some((store, root)) = options.store.clone() {
        tasks.push(tokio::spawn(poll_store(shared.clone(), store, root)));
    }
    let receiver = if options.grpc.is_some() || options.http.is_some() {
        let mut builder = Receiver::builder();
        if let Some(addr) = options.grpc {
            builder = builder.grpc(addr);
        }
        if let Some(addr) = options.http {
            builder = builder.http(addr);
        }
        Some(builder.start(IndexSink(shared.clone())).await?)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| UiError::Listen {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| UiError::Listen {
        addr: options.listen,
        source,
    })?;
    let app = router(shared.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the viewer stopped serving");
        }
    }));
    Ok(UiServer {
        addr,
        receiver,
        tasks,
        shared,
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/traces", get(list))
        .route("/api/traces/{id}", get(trace))
        .route("/api/version", get(version))
        .with_state(shared)
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(page_html(None))).into_response()
}

#[derive(serde::Deserialize)]
struct ListParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    errors: Option<String>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    page: usize,
}

async fn list(State(shared): State<Arc<Shared>>, Query(params): Query<ListParams>) -> Response {
    let mut query = ListQuery::parse(&params.q);
    query.errors_only = params.errors.is_some_and(|e| e == "1" || e == "true");
    query.sort = match params.sort.as_deref() {
        Some("duration") => Sort::Duration,
        _ => Sort::Start,
    };
    let page = shared.index().list(&query, params.page);
    Json(page).into_response()
}

async fn trace(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>) -> Response {
    let id = id.to_ascii_lowercase();
    let page = shared.index().trace_page(&id);
    match page {
        Some(page) => ([(header::CONTENT_TYPE, "application/json")], page).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no trace {id} here")).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct VersionParams {
    after: Option<u64>,
}

async fn version(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<VersionParams>,
) -> Response {
    let mut changes = shared.version.subscribe();
    if let Some(after) = params.after {
        let _ = tokio::time::timeout(VERSION_WAIT, changes.wait_for(|v| *v != after)).await;
    }
    let version = *changes.borrow();
    Json(serde_json::json!({ "version": version })).into_response()
}

/// Reads `path` and then its new complete lines as they come; a file that
/// shrinks is read again from its start (repeated spans are skipped).
async fn follow_file(shared: Arc<Shared>, path: PathBuf) {
    let mut offset = 0u64;
    let mut warned = false;
    loop {
        match read_tail(&path, &mut offset).await {
            Ok(requests) => {
                warned = false;
                for request in &requests {
                    shared.ingest(request);
                }
            }
            Err(error) if !warned => {
                tracing::warn!(file = %path.display(), %error, "cannot read; trying again");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(FILE_POLL).await;
    }
}

async fn read_tail(
    path: &std::path::Path,
    offset: &mut u64,
) -> std::io::Result<Vec<ExportTraceServiceRequest>> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut file = tokio::fs::File::open(path).await?;
    if file.metadata().await?.len() < *offset {
        *offset = 0;
    }
    file.seek(std::io::SeekFrom::Start(*offset)).await?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await?;
    let (requests, used) = dspans_otlp::parse_complete_lines(&bytes);
    *offset += used as u64;
    Ok(requests)
}

/// Lists the store's open saved spans once a second.
async fn poll_store(shared: Arc<Shared>, store: Arc<dyn Store>, root: String) {
    let mut warned = false;
    loop {
        match crate::live::running_spans(&store, &root).await {
            Ok(running) => {
                warned = false;
                let mut index = shared.index();
                index.set_running(running);
                shared.changed(&index);
            }
            Err(error) if !warned => {
                tracing::warn!(%error, "cannot list the open spans; trying again");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(STORE_POLL).await;
    }
}
