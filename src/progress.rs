//! Progress on an interactive terminal: bars and spinners (indicatif) on **stderr**, never on
//! stdout, which carries data only (SPEC §2, "Output formats").
//!
//! Shown only when a person is watching: stderr is a terminal, not in GitHub Actions
//! (`GITHUB_ACTIONS=true`, whose log is not a terminal and would keep every redraw), not with
//! `-q`, and not with `TERM=dumb` (no cursor movement). `NO_COLOR` keeps the bar but drops its
//! colour (<https://no-color.org>). The decision is taken once, in `main`, by [`init`]; before it
//! (and in library tests) nothing is shown.
//!
//! While a bar is on screen the stderr log prints through [`suspend`], so a log line never lands
//! in the middle of a bar. A core module: commands use it, it knows no command.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::context::Env;
use crate::env_vars as ev;

/// Whether progress is drawn, and in colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Visibility {
    /// Draw bars and spinners on stderr.
    pub shown: bool,
    /// Use colour in them.
    pub color: bool,
}

/// The visibility rules above, as a pure function of the environment, `-q` and whether stderr
/// is a terminal.
pub fn decide(env: &Env, quiet: bool, stderr_is_terminal: bool) -> Visibility {
    let shown = stderr_is_terminal
        && !quiet
        && env.get(ev::GITHUB_ACTIONS) != Some("true")
        && !env.get(ev::TERM).is_some_and(|t| t.eq_ignore_ascii_case("dumb"));
    // NO_COLOR: any value, even empty, per no-color.org; Env::get treats empty as unset, so the
    // raw process environment is asked too.
    let no_color = env.get(ev::NO_COLOR).is_some() || std::env::var_os(ev::NO_COLOR).is_some();
    Visibility { shown, color: shown && !no_color }
}

static VISIBILITY: OnceLock<Visibility> = OnceLock::new();

/// The bar or spinner on screen now, for [`suspend`].
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Decides visibility for this process from its environment, `-q` and stderr; first call wins.
pub fn init(env: &Env, quiet: bool) {
    use std::io::IsTerminal as _;
    let _ = VISIBILITY.set(decide(env, quiet, std::io::stderr().is_terminal()));
}

fn visibility() -> Visibility {
    VISIBILITY.get().copied().unwrap_or_default()
}

/// Runs `f` (a stderr write) with the active bar, if any, lifted off the screen.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let active = ACTIVE.lock().ok().and_then(|a| a.clone());
    match active {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// A bar or spinner on stderr; invisible (every call a no-op) when progress is not shown.
/// Dropping it clears it from the screen.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(bar: ProgressBar, template: &str, plain: &str) -> Progress {
        let vis = visibility();
        if !vis.shown {
            return Progress { bar: ProgressBar::hidden() };
        }
        let style = ProgressStyle::with_template(if vis.color { template } else { plain })
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(style);
        if let Ok(mut a) = ACTIVE.lock() {
            *a = Some(bar.clone());
        }
        Progress { bar }
    }

    /// A bar over `len` items of `unit` (`chunks`, `records`) with the elapsed time and a
    /// message (e.g. tokens so far).
    pub fn bar(len: u64, prefix: &str, unit: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden()).with_prefix(prefix.to_owned());
        let template = format!("{{prefix}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {unit} · {{elapsed}} · {{msg}}");
        let plain = format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} · {{elapsed}} · {{msg}}");
        let p = Progress::new(bar, &template, &plain);
        p.bar.tick();
        p
    }

    /// A spinner with a message, redrawn every 200 ms.
    pub fn spinner(message: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()).with_message(message.to_owned());
        let p = Progress::new(bar, "{spinner:.cyan} {msg}", "{spinner} {msg}");
        if visibility().shown {
            p.bar.enable_steady_tick(Duration::from_millis(200));
        }
        p
    }

    /// Advances the bar by `n` items.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Grows the bar's length by `n` items (when the total is learnt on the way).
    pub fn inc_length(&self, n: u64) {
        self.bar.inc_length(n);
    }

    /// Replaces the message.
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// Whether anything is drawn.
    pub fn is_shown(&self) -> bool {
        !self.bar.is_hidden()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Ok(mut a) = ACTIVE.lock() {
            *a = None;
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_only_on_an_attended_terminal() {
        let plain = Env::from_pairs([("TERM", "xterm-256color")]);
        assert!(decide(&plain, false, true).shown);
        // Not a terminal (piped, redirected to a file, the Actions log).
        assert!(!decide(&plain, false, false).shown);
        // -q.
        assert!(!decide(&plain, true, true).shown);
        // In Actions, even on a terminal (a self-hosted runner started by hand).
        assert!(!decide(&Env::from_pairs([("GITHUB_ACTIONS", "true")]), false, true).shown);
        // A dumb terminal cannot redraw.
        assert!(!decide(&Env::from_pairs([("TERM", "dumb")]), false, true).shown);
        // GITHUB_ACTIONS with another value is not Actions.
        assert!(decide(&Env::from_pairs([("GITHUB_ACTIONS", "false")]), false, true).shown);
    }

    #[test]
    fn no_color_keeps_the_bar_without_colour() {
        let v = decide(&Env::from_pairs([("NO_COLOR", "1")]), false, true);
        assert_eq!(v, Visibility { shown: true, color: false });
        if std::env::var_os("NO_COLOR").is_none() {
            assert!(decide(&Env::from_pairs([]), false, true).color);
        }
        assert!(!decide(&Env::from_pairs([]), false, false).color, "no colour when nothing is shown");
    }

    #[test]
    fn before_init_a_bar_is_hidden_and_its_calls_do_nothing() {
        // Library tests never call init: visibility defaults to hidden.
        let p = Progress::bar(3, "reviewing", "chunks");
        p.inc(1);
        p.set_message("10 tokens".into());
        assert!(!p.is_shown());
        assert_eq!(suspend(|| 7), 7);
    }
}
