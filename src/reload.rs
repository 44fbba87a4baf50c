//! Reloading `schema.graphql` without a restart.
//!
//! [`Live`] holds the gateway that new requests use. A request takes its own `Arc` of the
//! gateway when it starts, so a reload never touches a request in flight: it finishes on the
//! schema it started with. A new schema with an error is refused, its diagnostics logged, and
//! the old one keeps serving.

use std::{
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::gateway::{Gateway, Options};

/// The gateway currently serving, and its version (1 for the schema loaded at start-up).
pub struct Live {
    current: RwLock<Arc<Gateway>>,
    version: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    draining: std::sync::atomic::AtomicBool,
}

impl Live {
    /// From now on `/readyz` answers 503: the process is shutting down.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn new(gw: Arc<Gateway>) -> Arc<Live> {
        Arc::new(Live {
            current: RwLock::new(gw),
            version: AtomicU64::new(1),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            draining: Default::default(),
        })
    }

    /// The gateway for a request that starts now.
    pub fn get(&self) -> Arc<Gateway> {
        self.current
            .read()
            .expect("live schema lock poisoned")
            .clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// `(successful, refused)` reloads since start-up.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::SeqCst),
            self.reloads_failed.load(Ordering::SeqCst),
        )
    }

    fn replace(&self, gw: Arc<Gateway>) -> u64 {
        let mut current = self.current.write().expect("live schema lock poisoned");
        *current = gw;
        self.reloads_ok.fetch_add(1, Ordering::SeqCst);
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// How `{env.NAME}` is looked up on every load.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Re-reads one schema file into a [`Live`].
#[derive(Clone)]
pub struct Reloader {
    pub path: PathBuf,
    pub options: Options,
    pub env: Env,
    pub live: Arc<Live>,
}

impl Reloader {
    /// Loads the file again. `Ok(version)` when the new schema now serves; otherwise the
    /// rendered diagnostics, and the old schema keeps serving.
    pub fn reload(&self) -> Result<u64, String> {
        let file = self.path.display().to_string();
        let refused = |why: String| {
            self.live.reloads_failed.fetch_add(1, Ordering::SeqCst);
            Err(why)
        };
        let source = match std::fs::read_to_string(&self.path) {
            Ok(s) => s,
            Err(e) => return refused(format!("cannot read {file}: {e}")),
        };
        match Gateway::load(&source, self.options.clone(), &*self.env) {
            Ok((gw, _warnings)) => Ok(self.live.replace(gw)),
            Err(diags) => refused(diags.iter().map(|d| d.render(&file, &source)).collect()),
        }
    }

    /// Reloads and logs the outcome.
    pub fn reload_and_log(&self, why: &str) {
        match self.reload() {
            Ok(version) => tracing::info!(version, trigger = why, "schema reloaded"),
            Err(diags) => tracing::error!(
                trigger = why,
                "new schema refused; version {} keeps serving\n{diags}",
                self.live.version()
            ),
        }
    }

    /// Polls the file every `interval` and reloads when its content changes. The file is
    /// read once now, so a change made before the returned future first runs still counts.
    pub fn watch(self, interval: Duration) -> impl Future<Output = ()> + Send + 'static {
        let mut last = std::fs::read(&self.path).ok();
        async move {
            loop {
                tokio::time::sleep(interval).await;
                let now = std::fs::read(&self.path).ok();
                if now != last {
                    last = now;
                    self.reload_and_log("file changed");
                }
            }
        }
    }

    /// Reloads on every SIGHUP. The handler is installed now, before the returned future is
    /// spawned, so an early SIGHUP cannot end the process.
    #[cfg(unix)]
    pub fn on_sighup(self) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        Ok(async move {
            while hup.recv().await.is_some() {
                self.reload_and_log("SIGHUP");
            }
        })
    }
}
