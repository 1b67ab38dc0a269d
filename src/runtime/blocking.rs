//! Blocking work (sled calls, a big comparison) run off the async workers and awaited as if it
//! had run in the calling task: its value, or its panic carried on in the caller (whose
//! supervisor logs it and starts the task again, docs/operations.md#isolation), instead
//! of an `expect` on the join at every call.

/// `spawn_blocking(f)`, awaited.
pub async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // A blocking task is never aborted; it is dropped unstarted only when the runtime
            // shuts down, which drops this task too: nothing is left to answer.
            Err(_) => std::future::pending().await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_value_comes_back_and_a_panic_goes_on_in_the_caller() {
        assert_eq!(blocking(|| 41 + 1).await, 42);
        let caller = tokio::spawn(blocking(|| -> u8 { panic!("inside the blocking step") }));
        let e = caller.await.expect_err("the caller's task panicked");
        let panic = e.into_panic();
        assert_eq!(
            panic.downcast_ref::<&str>(),
            Some(&"inside the blocking step")
        );
    }
}
