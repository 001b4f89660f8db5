#!/usr/bin/env bash
# Fuzz the parsers and the unpacker: scripts/fuzz.sh [TARGET…] [--seconds N]
#
# Builds the cargo-fuzz targets of fuzz/ (nightly toolchain, cargo-fuzz) and runs each TARGET (default: all, one
# after the other) for N seconds (default 600) in one libFuzzer process under `nice -n 19`, then prints per target
# the seconds run, executions (libFuzzer's final stats), executions per second, and crashes (files libFuzzer wrote to
# fuzz/artifacts/TARGET/: crash-*, timeout-*, oom-*, leak-*; slow-unit-* are counted apart). Exit status 1 when any
# target found a crash.
#
# Seeds: fuzz/corpus/TARGET/ is filled from the repository's own examples (hooks-examples/, the README and test
# fixtures; archives are packed from hooks-examples/) and the committed regression inputs fuzz/regressions/TARGET/;
# the corpus grows across runs and is not committed. What a target runs and asserts: fuzzing/src/TARGET.rs.
#
# Environment: CARGO_FUZZ_TARGET_DIR (build dir, default fuzz/target), FUZZ_LOG_DIR (full libFuzzer logs, default
# fuzz/logs), FUZZ_TIMEOUT (seconds one input may take before it counts as a hang, default 20).
# Needs: rustup's nightly toolchain and `cargo install cargo-fuzz --locked` (0.13.2 was used).
# Not part of scripts/test.sh: the regression inputs run in the normal suite (fuzzing/tests/regressions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=600
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --seconds=*) seconds=${1#--seconds=}; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "scripts/fuzz.sh: unknown option $1 (expected TARGET… [--seconds N])" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$seconds" in ''|*[!0-9]*) echo "scripts/fuzz.sh: --seconds expects a whole number, got \`$seconds\`" >&2; exit 2 ;; esac

all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^rollcage-fuzz$')
if [ ${#targets[@]} -eq 0 ]; then
  read -r -a targets <<<"$(echo $all)"
fi
for t in "${targets[@]}"; do
  if ! grep -qx "$t" <<<"$all"; then
    echo "scripts/fuzz.sh: no target \`$t\`; the targets are: $(echo $all)" >&2
    exit 2
  fi
done

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "scripts/fuzz.sh: needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: needs cargo-fuzz: cargo install cargo-fuzz --locked" >&2
  exit 2
fi

target_dir=${CARGO_FUZZ_TARGET_DIR:-$root/fuzz/target}
log_dir=${FUZZ_LOG_DIR:-$root/fuzz/logs}
timeout=${FUZZ_TIMEOUT:-20}
mkdir -p "$log_dir"

# --- seeds -------------------------------------------------------------------------------------------------------

# Text blocks from the repository: fenced ```LANG blocks of a markdown file, `//!` doc blocks of a Rust file, and
# Rust string literals (raw r#"…"# ones, and "{HEAD}…" format strings of the AppSpec rule tests, HEAD expanded),
# each kept when it contains KEYWORD. Usage: extract DIR KEYWORD FILE…
extract() {
  python3 - "$@" <<'PY'
import hashlib, os, re, sys
out, keyword, files = sys.argv[1], sys.argv[2], sys.argv[3:]
head = "version: 0.0\nos: linux\n"
def unescape(s):
    s = s.replace("{{", "\0L").replace("}}", "\0R").replace("{HEAD}", head)
    s = re.sub(r'\\(n|t|"|\\|0)', lambda m: {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "0": "\0"}[m.group(1)], s)
    return s.replace("\0L", "{").replace("\0R", "}")
blocks = []
for f in files:
    text = open(f, encoding="utf-8").read()
    if f.endswith(".md"):
        blocks += re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M)
    else:
        doc = "\n".join(l[4:] if l.startswith("//! ") else l[3:] for l in text.splitlines() if l.startswith("//!"))
        blocks += re.findall(r"^```\w*\n(.*?)^```", doc, re.S | re.M)
        blocks += [b for _, b in re.findall(r'r(#+)"(.*?)"\1', text, re.S)]
        blocks += [unescape(s) for s in re.findall(r'"(\{HEAD\}(?:[^"\\]|\\.)*)"', text)]
for b in blocks:
    if keyword in b:
        name = hashlib.sha1(b.encode()).hexdigest()[:16]
        open(os.path.join(out, "seed-" + name), "w", encoding="utf-8").write(b)
PY
}

# Archives of the example revisions: tar (GNU, pax, ustar), tar.gz, zip; with and without a wrapper directory, and
# with a symlink, a hardlink and an empty directory. Usage: archives DIR
archives() {
  local out=$1 work
  work=$(mktemp -d)
  cp -r hooks-examples/hello "$work/hello"
  mkdir -p "$work/hello/empty" && ln -s app/hello.sh "$work/hello/link" && ln "$work/hello/VERSION" "$work/hello/hard"
  cp -r hooks-examples/bundles/shell "$work/shell"
  local tarflags=(-b1 --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner)
  for fmt in gnu pax ustar; do
    tar "${tarflags[@]}" --format=$fmt -cf "$out/hello-$fmt.tar" -C "$work/hello" .
  done
  tar "${tarflags[@]}" -cf "$out/wrapped.tar" -C "$work" hello
  tar "${tarflags[@]}" -cf "$out/shell.tar" -C "$work/shell" .
  gzip -9n <"$out/hello-gnu.tar" >"$out/hello.tar.gz"
  gzip -9n <"$out/wrapped.tar" >"$out/wrapped.tar.gz"
  (cd "$work/hello" && zip -qrX -y "$out/hello.zip" .)
  (cd "$work" && zip -qrX "$out/wrapped.zip" hello)
  (cd "$work/shell" && zip -qrX -0 "$out/shell-stored.zip" .)
  rm -rf "$work"
}

seed() {
  local t=$1 dir=$root/fuzz/corpus/$1
  mkdir -p "$dir"
  if [ -d "fuzz/regressions/$t" ]; then
    cp fuzz/regressions/"$t"/* "$dir"/ 2>/dev/null || true
  fi
  case "$t" in
    appspec)
      find hooks-examples runtime/tests/fixtures -name 'appspec.y*ml' -o -name '*.yml' | sort -u |
        while read -r f; do cp "$f" "$dir/example-$(echo "$f" | tr / _)"; done
      extract "$dir" "version:" runtime/tests/appspec_rules/*.rs README.md hooks-examples/README.md ;;
    form)
      extract "$dir" "destination" README.md runtime/src/form.rs runtime/tests/form.rs proto/src/form.rs ;;
    lb)
      extract "$dir" "server_groups" README.md coordinator/README.md lbdriver/README.md proto/src/lb.rs ;;
    archive)
      archives "$dir" ;;
    wire) ;; # the regression inputs: one of each message
  esac
}

# `--features runtime` for a target that needs it (`required-features` in fuzz/Cargo.toml): lb and wire build without
# the runtime crate, in minutes rather than the half hour an instrumented wasmtime takes.
features_of() {
  if awk -v t="$1" '/^\[\[bin\]\]/{n=""} /^name = /{n=$3} /^required-features/{if (n=="\""t"\"") f=1} END{exit !f}' "$root/fuzz/Cargo.toml"; then
    echo "--features=runtime"
  fi
}

# --- build and run -----------------------------------------------------------------------------------------------

for t in "${targets[@]}"; do
  echo "+ cargo +nightly fuzz build --target-dir $target_dir $(features_of "$t") $t"
  (cd fuzz && cargo +nightly fuzz build --target-dir "$target_dir" $(features_of "$t") "$t")
done

stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

summary=()
found=0
for t in "${targets[@]}"; do
  seed "$t"
  mkdir -p "fuzz/artifacts/$t"
  before=$(ls "fuzz/artifacts/$t" | grep -cE '^(crash|timeout|oom|leak)-' || true)
  slow_before=$(ls "fuzz/artifacts/$t" | grep -c '^slow-unit-' || true)
  log=$log_dir/$t.log
  echo "+ nice -n 19 cargo +nightly fuzz run --jobs 1 $(features_of "$t") $t fuzz/corpus/$t -- -max_total_time=$seconds -print_final_stats=1 -timeout=$timeout  (log: $log)"
  start=$(date +%s)
  status=0
  (cd fuzz && nice -n 19 cargo +nightly fuzz run --target-dir "$target_dir" --jobs 1 $(features_of "$t") "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout="$timeout" -rss_limit_mb=2048) >"$log" 2>&1 || status=$?
  took=$(( $(date +%s) - start ))
  execs=$(stat_of number_of_executed_units "$log"); execs=${execs:-0}
  rate=$(stat_of average_exec_per_sec "$log"); rate=${rate:-0}
  after=$(ls "fuzz/artifacts/$t" | grep -cE '^(crash|timeout|oom|leak)-' || true)
  crashes=$(( after - before ))
  # Inputs over libFuzzer's -report_slow_units (10 s): not failures (a nice'd fuzzer on a busy machine waits), but
  # worth a look.
  slow=$(( $(ls "fuzz/artifacts/$t" | grep -c '^slow-unit-' || true) - slow_before ))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    echo "scripts/fuzz.sh: $t: libFuzzer exited $status without an artifact; see $log" >&2
    tail -20 "$log" >&2
    crashes="?"
  fi
  if [ "$crashes" != 0 ]; then
    found=1
    ls -t "fuzz/artifacts/$t" | grep -E '^(crash|timeout|oom|leak)-' | head -n "${crashes/\?/1}" |
      sed "s|^|  found: fuzz/artifacts/$t/|"
    grep -m1 -A3 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | sed 's/^/  /' || true
  fi
  line=$(printf '%-8s %8s s %12s executions %8s exec/s %4s crashes %4s slow units' "$t" "$took" "$execs" "$rate" \
    "$crashes" "$slow")
  echo "$line"
  summary+=("$line")
done

echo "--- fuzz summary (--seconds $seconds)"
printf '%s\n' "${summary[@]}"
exit "$found"
