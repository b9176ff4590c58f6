//! `both_engines!`: one test body run on each state engine, instead of a hand-written
//! `_sqlite`/`_postgres` pair of wrappers.

/// `both_engines!(body)` for an `async fn body(state_url: Option<String>)`: a module `body` with
/// the tests `body::sqlite` (`None`: the test's own SQLite state) and `body::postgres` (a fresh
/// database on the shared throwaway PostgreSQL server). `cargo test body` runs both.
macro_rules! both_engines {
    ($($body:ident),+ $(,)?) => {
        $(
            mod $body {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$body(None).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let url = crate::support::postgres::shared().fresh_database().await;
                    super::$body(Some(url)).await;
                }
            }
        )+
    };
}
