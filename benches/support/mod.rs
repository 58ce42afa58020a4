//! Helpers the whole-process benchmarks share: the median of samples and peak RSS of one run.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// The median of `v` (the upper one of an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Peak RSS in MB of one run, through GNU time (`%M` is KiB); `None` without /usr/bin/time.
pub(crate) fn peak_rss_mb(cmd: &Command) -> Option<f64> {
    if !Path::new("/usr/bin/time").exists() {
        return None;
    }
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped.arg("-f").arg("peak-rss-kib=%M").arg(cmd.get_program()).args(cmd.get_args());
    wrapped.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let out = wrapped.output().ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let kib: f64 = err.lines().rev().find_map(|l| l.strip_prefix("peak-rss-kib="))?.trim().parse().ok()?;
    Some(kib / 1024.0)
}
