//! A future whose panic is caught where it is awaited: the daemon's short-lived tasks (a poll
//! turn, a deliverer) report their own panic as their supervisor did, without a second task.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// `fut`'s output, or the payload of its panic. What the future held is dropped as it unwinds;
/// the caller goes on as a supervisor would after a task's panic.
pub fn caught<F: Future>(fut: F) -> Caught<F> {
    Caught(Box::pin(fut))
}

/// See [`caught`]. Boxed: a poll's future is several kilobytes, kept off the caller's.
pub struct Caught<F>(Pin<Box<F>>);

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_value_or_the_panic() {
        assert_eq!(caught(async { 7 }).await.ok(), Some(7));
        let panic = caught(async {
            tokio::task::yield_now().await;
            panic!("in the turn")
        })
        .await
        .err()
        .unwrap();
        assert_eq!(crate::redact::panic_message(&*panic), "in the turn");
    }
}
