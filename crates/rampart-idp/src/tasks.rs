//! The tasks a server owns, aborted together when it is dropped (also used by the test
//! servers of `rampart-test-support`).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::JoinSet;

/// A set of tasks that a server owns: everything it spawns (accept loop, connections) goes
/// here, and [`TaskGroup::shutdown`] aborts all of it. Once shut down, new spawns are dropped
/// instead of started, so an accept loop racing the shutdown cannot leave a connection task
/// behind.
#[derive(Debug, Clone, Default)]
pub struct TaskGroup(Arc<Mutex<TaskGroupInner>>);

#[derive(Debug, Default)]
struct TaskGroupInner {
    set: JoinSet<()>,
    closed: bool,
}

impl TaskGroup {
    /// Spawns `task` on the current runtime, unless the group was shut down.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        // Forget finished tasks so a long-lived server does not accumulate handles.
        while inner.set.try_join_next().is_some() {}
        inner.set.spawn(task);
    }

    /// Aborts every task of the group and refuses new ones.
    pub fn shutdown(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.set.abort_all();
    }

    fn lock(&self) -> MutexGuard<'_, TaskGroupInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
