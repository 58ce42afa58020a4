//! The run's context: the event payload and the `GITHUB_*` environment.
//! (Implementation in progress: skeleton.)
