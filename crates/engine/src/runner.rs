//! Executions in flight in this process, owned by the [`Runner`] (held by the API state),
//! each cancellable through its token and awaited on shutdown.
//!
//! Workers (`ferry_api::jobs`) run each claimed job's execution through [`Runner::run`] on
//! the job's own task, so the API's cancel and delete can reach executions of this process
//! directly; executions of other processes are reached through the store (the job queue).
//! [`Runner::shutdown`] first cancels [`Runner::closing`], which stops the in-process
//! workers from claiming more jobs, then cancels every execution at its next batch
//! boundary and waits for it.

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
    closing: CancellationToken,
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

    /// Cancelled when [`Runner::shutdown`] begins: in-process workers stop claiming jobs.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// Whether [`Runner::shutdown`] has begun.
    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Runs an execution on the caller's task (a worker's job task), registered so that
    /// [`Runner::cancel`] and [`Runner::shutdown`] reach it; returns how it ended.
    pub async fn run(&self, context: RunContext) -> RunEnd {
        let sync_id = context.sync_id;
        let execution_id = context.execution_id;
        self.lock().insert(
            sync_id,
            Running {
                execution_id,
                cancel: context.cancel.clone(),
                handle: None,
            },
        );
        // Deregisters even if the future is dropped mid-run.
        let _registration = Registration {
            runner: self,
            sync_id,
            execution_id,
        };
        execute(context).await
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

    /// Stops in-process workers from claiming, cancels every execution and waits for them.
    pub async fn shutdown(&self, timeout: Duration) {
        self.closing.cancel();
        let ids: Vec<Uuid> = self.lock().keys().copied().collect();
        for id in ids {
            self.cancel_and_wait(id, timeout).await;
        }
    }
}

/// Removes a [`Runner::run`] entry when the run ends or is dropped.
struct Registration<'r> {
    runner: &'r Runner,
    sync_id: Uuid,
    execution_id: Uuid,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut map = self.runner.lock();
        if map
            .get(&self.sync_id)
            .is_some_and(|r| r.execution_id == self.execution_id)
        {
            map.remove(&self.sync_id);
        }
    }
}
