//! The fix rounds (SPEC §3.2): prompt → answer → apply → verify, the result fed back, up to
//! `fix.max_rounds`.

use std::sync::Arc;

use crate::context::Env;
use crate::edit::context::{Feedback, TokenBudget};
use crate::edit::verify::{self, VerifyResult, VerifySpec};
use crate::edit::{self, EditSet, FileChange, Refused};
use crate::exit::{Exit, ExitError};
use crate::ledger::{Call, Ledger};
use crate::log;
use crate::providers::chain::{Resilient, Traced};
use crate::providers::structured::complete_json;
use crate::providers::{CompletionRequest, Provider};
use crate::usage::Usage;

use super::workspace::Workspace;
use super::FixRun;

/// What the rounds produced.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The model's last non-empty explanation.
    pub(crate) explanation: String,
    /// Cumulative change against the checkout as it was.
    pub(crate) changes: Vec<FileChange>,
    /// Each refused entry with its round.
    pub(crate) refused: Vec<(u32, Refused)>,
    /// What applying the edits noted (a re-indented match, an edit that changes nothing).
    pub(crate) notes: Vec<String>,
    /// The last verify run, if any ran.
    pub(crate) verify: Option<VerifyResult>,
    /// Rounds whose answer is part of the result.
    pub(crate) rounds: u32,
    /// Tokens of every call of every round.
    pub(crate) usage: Usage,
    /// USD; `None` once any call had no known price.
    pub(crate) cost_usd: Option<f64>,
}

/// Up to `fix.max_rounds` rounds of prompt → answer → apply → verify, in `ws` (which records
/// each touched file's original, so the caller can restore an in-place checkout). Every call is
/// recorded in `ledger`. A failed round after the first ends the rounds with what the earlier
/// ones produced (an authentication failure excepted).
///
/// Errors: the first round's provider error, an authentication error, a write that fails.
pub(crate) async fn rounds(
    run: &FixRun,
    ws: &mut Workspace,
    chain: &Arc<Resilient>,
    system: &str,
    budget: TokenBudget,
    verify: Option<(&VerifySpec, &Env)>,
    ledger: &Ledger,
) -> Result<Outcome, ExitError> {
    let schema: serde_json::Value =
        serde_json::from_str(crate::prompt::FIX_SCHEMA).map_err(|e| anyhow::anyhow!("fix schema: {e}"))?;
    let mut out = Outcome { cost_usd: Some(0.0), ..Outcome::default() };
    let mut feedback: Option<Feedback> = None;
    let max_rounds = run.config.fix.max_rounds.max(1);
    for round in 1..=max_rounds {
        out.rounds = round;
        let edited: Vec<String> = ws.originals.keys().cloned().collect();
        let prompt = edit::context::build(
            &ws.root,
            &run.subject,
            &run.tracked,
            &edited,
            feedback.as_ref(),
            budget,
            &run.redactor,
        );
        for l in &prompt.left_out {
            log::info(&format!("not in the prompt: {l}"));
        }
        let req = CompletionRequest {
            system: system.to_string(),
            prompt: prompt.text,
            json_schema: Some(("fix_output".to_string(), schema.clone())),
            max_output_tokens: run.config.fix.max_output_tokens,
            temperature: Some(0.0),
            prompt_cache: None,
        };
        log::info(&format!("fix round {round} of {max_rounds} with {} ({})", chain.name(), chain.model()));
        let traced = Traced::new(chain.as_ref());
        let result = complete_json(&traced, &req).await;
        let calls = traced.into_calls();
        for call in &calls {
            out.usage += call.usage;
            let cost = ledger.record(&call.ledger_call());
            out.cost_usd = match (out.cost_usd, cost) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                if calls.is_empty() {
                    ledger.record(&Call::failed(chain.name(), chain.model(), e.class()));
                }
                if round > 1 && !e.is_auth() {
                    log::warn(&format!("round {round} failed ({e}); publishing what round {} produced", round - 1));
                    out.rounds = round - 1;
                    break;
                }
                return Err(e.into());
            }
        };
        let explanation =
            answer.value.get("explanation").and_then(|e| e.as_str()).unwrap_or_default().trim().to_string();
        let set: EditSet = serde_json::from_value(answer.value).unwrap_or_default();
        let applied = edit::plan_with(&ws.root, &set, &run.policy, edit::Limits::from_config(&run.config.fix));
        for c in &applied.changes {
            ws.originals.entry(c.path.clone()).or_insert_with(|| c.before.clone());
        }
        edit::write(&ws.root, &applied.changes).map_err(|e| ExitError::new(Exit::Failure, e))?;
        if !explanation.is_empty() {
            out.explanation = explanation;
        }
        out.notes.extend(applied.notes.iter().cloned());
        for r in &applied.refused {
            log::warn(&format!("round {round}: {} of {} refused: {}", r.entry, r.path, r.reason));
        }
        let retry = applied.refused.iter().any(|r| !r.policy);
        out.refused.extend(applied.refused.iter().cloned().map(|r| (round, r)));
        let mut fb = Feedback {
            applied_diff: edit::unified_diff(&ws.changes()),
            refused: applied.refused.iter().map(|r| format!("{} of `{}`: {}", r.entry, r.path, r.reason)).collect(),
            verify: None,
        };
        match verify {
            Some((spec, env)) if !ws.originals.is_empty() => {
                let v = verify::run(spec, &ws.root, env).await;
                let line = v.describe(spec.timeout);
                log::info(&format!("verify `{}` {line}", spec.display));
                let passed = v.passed();
                fb.verify = Some((spec.display.clone(), line, run.redactor.redact(&v.output_tail)));
                out.verify = Some(v);
                // A passing verify ends the rounds even when some entry was refused: the
                // refusals are listed in the PR body, and another round could only undo a
                // verified state.
                if passed {
                    break;
                }
            }
            _ if !retry => break,
            _ => {}
        }
        feedback = Some(fb);
    }
    out.changes = ws.changes();
    Ok(out)
}
