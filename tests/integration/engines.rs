//! `both_engines!`: one test body run on each state engine, instead of a hand-written
//! `_sqlite`/`_postgres` pair of wrappers.

/// `both_engines!(body)` for an `async fn body(state_url: Option<String>)`: a module `body` with
/// the tests `body::sqlite` (`None`: the test's own SQLite state) and `body::postgres` (a fresh
/// database on the shared throwaway PostgreSQL server). `cargo test body` runs both.
///
/// The SQLite test runs on tokio's current-thread runtime and the PostgreSQL one on two worker
/// threads; `both_engines!(current_thread: body)` runs both on the current thread (a body that
/// captures its log per thread, or counts on one thread's order), `both_engines!(multi_thread:
/// body)` both on two worker threads.
macro_rules! both_engines {
    (current_thread: $($body:ident),+ $(,)?) => {
        $(both_engines!(@one $body, (), ());)+
    };
    (multi_thread: $($body:ident),+ $(,)?) => {
        $(both_engines!(@one $body, (flavor = "multi_thread", worker_threads = 2), (flavor = "multi_thread", worker_threads = 2));)+
    };
    (@one $body:ident, ($($sqlite:tt)*), ($($postgres:tt)*)) => {
        mod $body {
            #[tokio::test($($sqlite)*)]
            async fn sqlite() {
                super::$body(None).await;
            }

            #[tokio::test($($postgres)*)]
            async fn postgres() {
                let url = crate::support::postgres::shared().fresh_database().await;
                super::$body(Some(url)).await;
            }
        }
    };
    ($($body:ident),+ $(,)?) => {
        $(both_engines!(@one $body, (), (flavor = "multi_thread", worker_threads = 2));)+
    };
}
