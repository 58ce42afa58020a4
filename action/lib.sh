# shellcheck shell=bash
# Shared by action/install.sh and action/run.sh (sourced, never run on its own).

# Prints "$2…" as an `::$1` annotation (`error`, `warning`) with %, CR and LF escaped as the
# runner expects, so the text stays one annotation whatever it holds.
annotate() {
  local level=$1
  shift
  local msg="$*"
  msg="${msg//'%'/'%25'}"
  msg="${msg//$'\r'/'%0D'}"
  msg="${msg//$'\n'/'%0A'}"
  echo "::${level} title=agentctl action::${msg}" >&2
}

# Prints "$2…" as an `::error::` annotation and exits with code $1.
fail_with() {
  local code=$1
  shift
  annotate error "$@"
  exit "$code"
}
