#!/usr/bin/env bash
# Installs the agentctl release binary for this runner, verified against the release's SHA256SUMS,
# into the runner's tool cache; or builds it from the action's checkout (`version: source`).
#
# Run by action.yml's "install" step; every input arrives in the environment (never as code):
#   AGENTCTL_VERSION          the `version` input: a tag (`v0.1.0`), `source`, or empty
#   AGENTCTL_ACTION_REF       github.action_ref (the tag or sha the workflow pinned the action to)
#   AGENTCTL_ACTION_REPO      github.action_repository (`owner/name`; empty for a local `./` action)
#   AGENTCTL_ACTION_PATH      github.action_path (the action's checkout)
#   RUNNER_OS, RUNNER_ARCH, RUNNER_TOOL_CACHE, RUNNER_TEMP, GITHUB_SERVER_URL, GITHUB_OUTPUT
# Writes the step outputs `path` (the binary) and `version` (the tag installed, or `source`).
#
# The version, when `version` is empty: github.action_ref when it is a release tag (`v1.2.3`);
# otherwise (the action pinned by commit sha, as it should be) `v` + the package version in the
# action checkout's Cargo.toml, i.e. the release that commit belongs to.
#
# The version is checked before anything touches the file system or the network: a release tag
# matches `^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$` exactly (it is one segment of the download
# URL and of the cache path, so `v..` or `v1/../x` must never get through); `source` and empty are
# the only other values.
#
# Download: `${GITHUB_SERVER_URL}/${repo}/releases/download/${tag}/${asset}` and `SHA256SUMS`
# beside it, with curl. GITHUB_SERVER_URL is parsed (RFC 3986 `scheme://authority`), never
# pattern-matched, and curl is given the URL rebuilt from the parsed parts: the scheme must be
# https, or http when the host is exactly 127.0.0.1, [::1] or localhost (the tests' loopback
# fakes); userinfo (`user:pass@`), a path, a query or a fragment is refused, and so is any other
# scheme. Parsed in bash (`[[ =~ ]]`, bash 3.2 as on macOS): the script relies only on bash, curl,
# tar, awk, sed and sha256sum/shasum, all on every hosted runner image; python3 is not guaranteed
# on a self-hosted runner's PATH.
#
# The archive's sha256 must equal its line in SHA256SUMS before anything is unpacked; a mismatch
# or a missing line fails the step and nothing is executed or cached. The verified binary is
# cached in `${RUNNER_TOOL_CACHE}/agentctl/<version>/<target>/` with a `<target>.complete` marker
# beside it (the layout of @actions/tool-cache) that records the binary's sha256
# (`<64 hex>  <exe>`, sha256sum format), so a later job on the same runner downloads nothing.
# A cached binary is re-hashed against that record before its path is handed out; a mismatch, a
# marker without a record (an older install, a planted folder) or a missing binary removes that
# cached copy with a warning and downloads and verifies the release again. NOTE: the record lives
# beside the binary, so this catches a binary replaced, truncated or corrupted without its record,
# not a writer who rewrites both: on a runner whose tool cache untrusted jobs can write, use
# ephemeral runners (README, "In a workflow").
set -euo pipefail

# shellcheck source=action/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The reason as an annotation; exit 1.
fail() { fail_with 1 "$@"; }

# A release tag as the `version` input takes it (see the header).
TAG_RE='^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$'

out() {
  if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
  fi
}

# The release target triple of the runner: the asset is `agentctl-<target>.tar.gz`.
resolve_target() {
  local os="${RUNNER_OS:-}" arch="${RUNNER_ARCH:-}"
  case "$os/$arch" in
    Linux/X64) echo x86_64-unknown-linux-musl ;;
    Linux/ARM64) echo aarch64-unknown-linux-musl ;;
    macOS/X64) echo x86_64-apple-darwin ;;
    macOS/ARM64) echo aarch64-apple-darwin ;;
    # No Windows ARM64 build is released; Windows on ARM runs the x64 binary under emulation.
    Windows/X64 | Windows/ARM64) echo x86_64-pc-windows-msvc ;;
    *)
      fail "unsupported runner: RUNNER_OS='${os}' RUNNER_ARCH='${arch}'; release binaries exist for Linux, macOS and Windows on X64 and ARM64 — use \`version: source\` to build with cargo"
      ;;
  esac
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    fail "neither sha256sum nor shasum is installed: cannot verify the download"
  fi
}

resolve_version() {
  local v="${AGENTCTL_VERSION:-}" ref="${AGENTCTL_ACTION_REF:-}"
  if [[ -n "$v" ]]; then
    [[ "$v" == source || "$v" =~ $TAG_RE ]] ||
      fail "invalid version '${v}' in the \`version\` input: expected a release tag vMAJOR.MINOR.PATCH[-PRERELEASE] such as v0.1.0, \`source\`, or empty"
    echo "$v"
    return
  fi
  if [[ "$ref" =~ $TAG_RE ]]; then
    echo "$ref"
    return
  fi
  local manifest="${AGENTCTL_ACTION_PATH:-}/Cargo.toml" pkg=""
  if [[ -f "$manifest" ]]; then
    pkg="$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$manifest" | sed -n 1p)"
  fi
  [[ -n "$pkg" ]] || fail "cannot tell which agentctl release to install: the action ref '${ref}' is not a release tag and ${manifest} has no version; set the \`version\` input"
  [[ "v$pkg" =~ $TAG_RE ]] ||
    fail "invalid version 'v${pkg}' from ${manifest}: not a release tag vMAJOR.MINOR.PATCH[-PRERELEASE]; set the \`version\` input"
  echo "v$pkg"
}

# Parses GITHUB_SERVER_URL (see the header) into SERVER_URL (`scheme://host[:port]`, rebuilt from
# the parsed parts, lowercase) and SERVER_PROTO (curl's `--proto`), or fails naming the variable.
# A value with `@` is never printed: its userinfo may be a password.
resolve_server() {
  local raw="${GITHUB_SERVER_URL:-https://github.com}" shown
  shown="'${raw}'"
  [[ "$raw" != *@* ]] || shown="(not shown: it has userinfo)"
  local url_re='^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)/?$'
  [[ "$raw" =~ $url_re ]] ||
    fail "GITHUB_SERVER_URL must be scheme://host[:port] with no path, query or fragment, got ${shown}"
  local scheme authority="${BASH_REMATCH[2]}"
  scheme="$(printf '%s' "${BASH_REMATCH[1]}" | tr '[:upper:]' '[:lower:]')"
  [[ "$authority" != *@* ]] ||
    fail "GITHUB_SERVER_URL must not carry userinfo (user:password@host): refused, value not shown"
  local host port="" ipv6_re='^(\[[0-9A-Fa-f:.]+\])(:([0-9]{1,5}))?$' name_re='^([A-Za-z0-9.-]+)(:([0-9]{1,5}))?$'
  if [[ "$authority" =~ $ipv6_re || "$authority" =~ $name_re ]]; then
    host="$(printf '%s' "${BASH_REMATCH[1]}" | tr '[:upper:]' '[:lower:]')"
    port="${BASH_REMATCH[3]}"
  else
    fail "GITHUB_SERVER_URL has no valid host[:port] (a DNS name, an IPv4 address or a [bracketed] IPv6 address), got ${shown}"
  fi
  if [[ -n "$port" ]] && ((10#$port < 1 || 10#$port > 65535)); then
    fail "GITHUB_SERVER_URL has port ${port}, outside 1-65535"
  fi
  case "$scheme" in
    https) SERVER_PROTO='=https' ;;
    http)
      case "$host" in
        127.0.0.1 | '[::1]' | localhost) SERVER_PROTO='=http' ;;
        *) fail "GITHUB_SERVER_URL must be https (http only for 127.0.0.1, [::1] or localhost), got ${shown}" ;;
      esac
      ;;
    *) fail "GITHUB_SERVER_URL must be an https URL, got scheme '${scheme}'" ;;
  esac
  SERVER_URL="${scheme}://${host}${port:+:$port}"
}

# Whether the binary $2 matches the sha256 recorded for it (as `<64 hex>  <exe>`) in marker $1.
cached_binary_matches() {
  local marker=$1 bin=$2 recorded actual
  [[ -f "$bin" && -x "$bin" ]] || return 1
  recorded="$(awk -v name="$(basename "$bin")" '$2 == name && $1 ~ /^[0-9a-f]+$/ && length($1) == 64 { print $1 }' "$marker" | sed -n 1p)"
  [[ -n "$recorded" ]] || return 1
  actual="$(sha256_of "$bin")"
  [[ "$actual" == "$recorded" ]]
}

build_from_source() {
  local src="${AGENTCTL_ACTION_PATH:-}"
  [[ -f "$src/Cargo.toml" ]] || fail "version: source needs the action's checkout; no Cargo.toml in '${src}'"
  command -v cargo >/dev/null 2>&1 || fail "version: source needs cargo on the runner"
  local target_dir="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/agentctl-source-build"
  echo "Building agentctl from ${src} (cargo build --release --locked)" >&2
  cargo build --release --locked --manifest-path "$src/Cargo.toml" --target-dir "$target_dir" >&2
  local bin="$target_dir/release/agentctl"
  [[ "${RUNNER_OS:-}" == Windows ]] && bin="$bin.exe"
  out path "$bin"
  out version source
  echo "$bin"
}

main() {
  local version
  version="$(resolve_version)"
  if [[ "$version" == source ]]; then
    build_from_source
    return
  fi
  # resolve_version let through only a release tag; checked again here because the tag becomes a
  # path segment that is removed with `rm -rf` below.
  [[ "$version" =~ $TAG_RE ]] || fail "invalid version '${version}': expected a release tag such as v0.1.0"
  resolve_server

  local target exe=agentctl
  target="$(resolve_target)"
  [[ "$target" == *windows* ]] && exe=agentctl.exe

  local cache_root="${RUNNER_TOOL_CACHE:-}"
  [[ -n "$cache_root" ]] || fail "RUNNER_TOOL_CACHE is not set: not on a GitHub Actions runner?"
  local dir="$cache_root/agentctl/${version#v}/$target"
  local bin="$dir/$exe"
  if [[ -f "$dir.complete" ]]; then
    if cached_binary_matches "$dir.complete" "$bin"; then
      echo "agentctl ${version} (${target}) from the tool cache, sha256 as recorded: ${bin}" >&2
      out path "$bin"
      out version "$version"
      echo "$bin"
      return
    fi
    annotate warning "the cached agentctl ${version} in ${dir} does not match the sha256 recorded at install (or has no record): removed; downloading and verifying the release again"
    rm -f "$dir.complete"
    rm -rf "$dir"
  fi

  local repo="${AGENTCTL_ACTION_REPO:-}"
  [[ -n "$repo" ]] || repo=agentctl/agentctl
  [[ "$repo" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || fail "invalid action repository '${repo}'"
  local asset="agentctl-${target}.tar.gz"
  local base="$SERVER_URL/$repo/releases/download/$version"

  local tmp
  tmp="$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/agentctl-download.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '$tmp'" EXIT

  local curl_opts=(--fail --silent --show-error --location --proto "$SERVER_PROTO" --proto-redir '=https'
    --retry 3 --connect-timeout 20 --max-time 300)
  echo "Downloading ${base}/${asset}" >&2
  curl "${curl_opts[@]}" --output "$tmp/$asset" "$base/$asset" ||
    fail "cannot download ${base}/${asset} (is ${version} released for ${target}?)"
  curl "${curl_opts[@]}" --output "$tmp/SHA256SUMS" "$base/SHA256SUMS" ||
    fail "cannot download ${base}/SHA256SUMS: refusing to run an unverified binary"

  # `sha256sum` format: `<64 hex>  <name>` (or ` *<name>` in binary mode); the name must match exactly.
  local expected
  expected="$(awk -v name="$asset" '{ n = $2; sub(/^\*/, "", n); if (n == name && $1 ~ /^[0-9a-fA-F]+$/ && length($1) == 64) { print tolower($1) } }' "$tmp/SHA256SUMS" | sed -n 1p)"
  [[ -n "$expected" ]] || fail "SHA256SUMS of ${version} has no line for ${asset}: refusing to run an unverified binary"
  local actual
  actual="$(sha256_of "$tmp/$asset")"
  if [[ "$actual" != "$expected" ]]; then
    fail "checksum mismatch for ${asset} of ${version}: SHA256SUMS says ${expected}, the download is ${actual}; the binary was not unpacked or run"
  fi
  echo "sha256 verified: ${actual}  ${asset}" >&2

  mkdir -p "$tmp/unpacked"
  tar -xzf "$tmp/$asset" -C "$tmp/unpacked" || fail "cannot unpack ${asset}"
  [[ -f "$tmp/unpacked/$exe" ]] || fail "${asset} holds no ${exe} at its top level"
  chmod 0755 "$tmp/unpacked/$exe"
  local bin_sha
  bin_sha="$(sha256_of "$tmp/unpacked/$exe")"

  # Into the cache: a fresh folder beside the final one, then a rename, then the marker, so a
  # concurrent or interrupted job never sees half a binary.
  mkdir -p "$(dirname "$dir")"
  local staging="$dir.tmp.$$"
  rm -rf "$staging"
  mkdir -p "$staging"
  mv "$tmp/unpacked/$exe" "$staging/$exe"
  rm -f "$dir.complete"
  rm -rf "$dir"
  mv "$staging" "$dir"
  printf '%s  %s\n' "$bin_sha" "$exe" >"$dir.complete.tmp.$$"
  mv "$dir.complete.tmp.$$" "$dir.complete"
  echo "agentctl ${version} (${target}) installed in ${dir}" >&2
  out path "$bin"
  out version "$version"
  echo "$bin"
}

main "$@"
