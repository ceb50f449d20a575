//! The rewrite pool: rewriting a big message is seconds of CPU (an 8 MB
//! message with ~186k links), and on an async worker it would stall every
//! pixel and redirect served by that worker meanwhile (issue 21: `/healthz`
//! waited 842 ms behind two such messages). Rewrites (relay and milter)
//! run here instead, on one thread per core named `rewrite-N`, so the
//! async workers keep answering; the number of rewrites running at once is
//! bounded by the thread count, and the rest wait in the pool's queue.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::OnceLock;

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

fn pool() -> &'static rayon::ThreadPool {
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("rewrite-{i}"))
            .build()
            // Fails only when the OS refuses to start threads, and then
            // the process could not serve anything anyway.
            .expect("cannot start the rewrite threads")
    })
}

/// Runs `job` on the rewrite pool; the caller's task waits without holding
/// its worker. The job runs inside the caller's tokio runtime context (it
/// may spawn tasks), and a panic in it resumes in the caller, as if the
/// job had run there.
pub(crate) async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    let runtime = tokio::runtime::Handle::try_current().ok();
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool().spawn(move || {
        let _entered = runtime.as_ref().map(|r| r.enter());
        let _ = tx.send(catch_unwind(AssertUnwindSafe(job)));
    });
    // The job always sends (its panic is caught); the pool lives as long
    // as the process, so it never drops a job unrun.
    match rx.await.expect("the rewrite pool dropped a job") {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

/// The current thread's name, for the log line that says where a rewrite
/// ran.
pub(crate) fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}
