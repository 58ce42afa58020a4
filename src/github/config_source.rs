//! The GitHub client as the place config loading reads a commit's files from
//! ([`crate::config::CommitFiles`]): the contents API, its error kept with its exit code.

use crate::config::{CommitFiles, FetchError};

use super::GitHub;

impl CommitFiles for GitHub {
    async fn read_at(&self, path: &str, sha: &str) -> Result<Option<Vec<u8>>, FetchError> {
        self.file_at(path, sha).await.map_err(|e| FetchError { exit: e.exit(), source: Box::new(e) })
    }
}
