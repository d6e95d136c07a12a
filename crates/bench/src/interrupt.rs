//! Ctrl-C or SIGTERM during a benchmark: the caller notes it and tears down what it built.

/// Completes on the first SIGINT or SIGTERM.
pub async fn wait_for_interrupt() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}
