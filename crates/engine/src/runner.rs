//! Executions in flight: one tokio task per running execution, owned by the [`Runner`]
//! (held by the API state), cancellable through its token and awaited on shutdown.
//!
//! The runner knows the executions of this process only. An execution the store says is
//! running but no runner owns was left by a process that stopped mid-run; the API marks it
//! `interrupted` before starting a new one (its confirmed rows are in the ledger, the rest
//! is retried).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::run::{RunContext, RunEnd, execute};

struct Running {
    execution_id: Uuid,
    cancel: CancellationToken,
    handle: Option<JoinHandle<RunEnd>>,
}

/// Running executions by sync id.
#[derive(Clone, Default)]
pub struct Runner {
    running: Arc<Mutex<HashMap<Uuid, Running>>>,
    schedulers: Arc<AtomicUsize>,
}

/// Marks a scheduler loop as running while it lives (see [`Runner::scheduler_running`]).
#[derive(Debug)]
pub struct SchedulerGuard {
    schedulers: Arc<AtomicUsize>,
}

impl Drop for SchedulerGuard {
    fn drop(&mut self) {
        self.schedulers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("running", &self.lock().len())
            .finish()
    }
}

impl Runner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a scheduler loop for as long as the guard lives.
    pub fn scheduler_guard(&self) -> SchedulerGuard {
        self.schedulers.fetch_add(1, Ordering::SeqCst);
        SchedulerGuard {
            schedulers: self.schedulers.clone(),
        }
    }

    /// Whether a scheduler loop runs in this process (scheduled frequencies are accepted
    /// only then: a schedule nobody runs would be a setting that does nothing).
    pub fn scheduler_running(&self) -> bool {
        self.schedulers.load(Ordering::SeqCst) > 0
    }

    /// The execution this process runs for a sync, if any.
    pub fn running_execution(&self, sync_id: Uuid) -> Option<Uuid> {
        self.lock().get(&sync_id).map(|r| r.execution_id)
    }

    /// Starts an execution on its own task. The context's cancellation token is the one
    /// [`Runner::cancel`] triggers.
    pub fn start(&self, context: RunContext) {
        let sync_id = context.sync_id;
        let execution_id = context.execution_id;
        let cancel = context.cancel.clone();
        let running = self.running.clone();
        // Register before spawning so a fast task cannot finish before it is registered.
        self.lock().insert(
            sync_id,
            Running {
                execution_id,
                cancel,
                handle: None,
            },
        );
        let handle = tokio::spawn(async move {
            let end = execute(context).await;
            let mut map = running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map
                .get(&sync_id)
                .is_some_and(|r| r.execution_id == execution_id)
            {
                map.remove(&sync_id);
            }
            end
        });
        if let Some(entry) = self.lock().get_mut(&sync_id)
            && entry.execution_id == execution_id
        {
            entry.handle = Some(handle);
        }
    }

    /// Signals cancellation (honoured at the next batch boundary); returns whether an
    /// execution of the sync was running here.
    pub fn cancel(&self, sync_id: Uuid) -> bool {
        match self.lock().get(&sync_id) {
            Some(running) => {
                running.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Cancels and waits up to `timeout` for the execution to stop; returns whether it
    /// stopped (or none was running).
    pub async fn cancel_and_wait(&self, sync_id: Uuid, timeout: Duration) -> bool {
        let handle = {
            let mut map = self.lock();
            match map.get_mut(&sync_id) {
                Some(running) => {
                    running.cancel.cancel();
                    running.handle.take()
                }
                None => return true,
            }
        };
        match handle {
            Some(handle) => tokio::time::timeout(timeout, handle).await.is_ok(),
            None => {
                // Another caller is already waiting; poll until the entry disappears.
                let deadline = tokio::time::Instant::now() + timeout;
                while self.running_execution(sync_id).is_some() {
                    if tokio::time::Instant::now() >= deadline {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                true
            }
        }
    }

    /// Waits for the execution of a sync to end (tests and shutdown); `None` when none
    /// runs here or another caller already awaits it.
    pub async fn wait(&self, sync_id: Uuid) -> Option<RunEnd> {
        let handle = self
            .lock()
            .get_mut(&sync_id)
            .and_then(|r| r.handle.take())?;
        handle.await.ok()
    }

    /// Cancels every execution and waits for them.
    pub async fn shutdown(&self, timeout: Duration) {
        let ids: Vec<Uuid> = self.lock().keys().copied().collect();
        for id in ids {
            self.cancel_and_wait(id, timeout).await;
        }
    }
}
