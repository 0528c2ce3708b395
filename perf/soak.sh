#!/usr/bin/env bash
# perf/soak.sh: the soak run (issue 7 point 6). Two `lazy-pages serve` daemons, A and B, and one
# memtouch (4 threads, dirtying) that is live-migrated back and forth between them with the jars,
# as a user runs them: `lazy-dump.jar migrate -t PID --to B`, then the restored process to A, and
# so on. After each migration: exit 0, the original pid gone, `VERIFY OK` from the new one, its
# heartbeat going on, the daemon's work directory empty. The daemons' fd count, thread count and
# VmRSS (from /proc) are measured before the first migration, every 10 migrations and at the end,
# printed as a table, and their growth after the warm-up must stay within the bounds below. At the
# end nothing may be left behind: no process but the daemons and the one live memtouch, no work
# directory or image in the daemons' work dirs, no file in the JVMs' temporary directory.
#
# Usage (from a clone, after ./lp build; needs root, ptrace and userfaultfd):
#   perf/soak.sh [--migrations 100] [--size-mib 256] [--threads 4] [--dirty-mib-per-sec 8]
#                [--mode cycle|hybrid|pre-copy|post-copy] [--net netns|loopback]
#                [--warmup 40] [--max-fd-growth 8] [--max-thread-growth 4] [--max-rss-growth-mib 48]
#                [--max-heap-growth-mib 4] [--daemon-heap-mib 512] [--time-limit-min 45] [--keep]
#
# --net netns (the default where `ip` is available) creates two network namespaces joined by a veth
# pair (10.198.N.1 and .2/30, nothing outside them) and removes them at the end, whatever happens;
# daemon A runs in the first, B in the second, and each `migrate` runs in the namespace the process
# currently lives in. --net loopback runs everything on 127.0.0.1.
# --mode cycle (the default) goes hybrid, post-copy, pre-copy, hybrid, ...
# Growth is measured from the warm-up row (after --warmup migrations: the JVMs' code caches and
# metaspace grow at first, and each daemon keeps its last 16 reports in memory) to the end. The
# daemons run with MALLOC_ARENA_MAX=2, which `serve` sets for itself (see README: glibc's per-thread malloc
# arenas otherwise grow the RSS of a daemon that starts threads per migration by 100-250 MiB before it levels off;
# a value in the environment is kept) and with a fixed, pre-touched heap (-Xms = -Xmx = --daemon-heap-mib, -XX:+AlwaysPreTouch; 0: the JVM's defaults), so that their RSS
# does not follow G1's heap sizing (which alone moves it by hundreds of MiB) and its growth is
# memory outside the heap: native allocations, mappings, direct buffers, thread stacks. The heap
# itself is measured as the live heap after a full GC (jcmd GC.run, then GC.heap_info).
# Exit status: 0 every check held; 1 a migration or a check failed (the work directory with every
# log is kept and named); 2 usage; 3 missing prerequisite.
set -euo pipefail
{ # the whole script is read before it runs: editing or updating the file during a run cannot derail it

migrations=100 size_mib=256 threads=4 rate=8 mode=cycle net=auto warmup=40
max_fd=8 max_thr=4 max_rss_mib=48 max_heap_mib=4 heap_mib=512 time_limit_min=45 keep=0
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --migrations) migrations=$2; shift 2 ;;
    --size-mib) size_mib=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --dirty-mib-per-sec) rate=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --net) net=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --max-fd-growth) max_fd=$2; shift 2 ;;
    --max-thread-growth) max_thr=$2; shift 2 ;;
    --max-rss-growth-mib) max_rss_mib=$2; shift 2 ;;
    --max-heap-growth-mib) max_heap_mib=$2; shift 2 ;;
    --daemon-heap-mib) heap_mib=$2; shift 2 ;;
    --time-limit-min) time_limit_min=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for v in migrations size_mib threads rate warmup max_fd max_thr max_rss_mib max_heap_mib heap_mib time_limit_min; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "soak: --${v//_/-} must be a whole number, not '${!v}'" >&2; exit 2; }
done
case "$mode" in cycle|hybrid|pre-copy|post-copy) ;; *) echo "soak: --mode must be cycle, hybrid, pre-copy or post-copy, not '$mode'" >&2; exit 2 ;; esac
case "$net" in auto|netns|loopback) ;; *) echo "soak: --net must be netns or loopback, not '$net'" >&2; exit 2 ;; esac
[ "$migrations" -ge 1 ] || { echo "soak: --migrations must be at least 1" >&2; exit 2; }
[ "$warmup" -lt "$migrations" ] || warmup=0

repo=$(cd "$(dirname "$0")/.." && pwd)
dump_jar=$repo/runtime/target/lazy-dump.jar
pages_jar=$repo/runtime/target/lazy-pages.jar
stubs=$repo/native-stubs/target/bin
for f in "$dump_jar" "$pages_jar" "$stubs/memtouch" "$stubs/lp-stub"; do
  [ -e "$f" ] || { echo "soak: $f is missing: run ./lp build first" >&2; exit 3; }
done
[ "$(id -u)" -eq 0 ] || { echo "soak: needs root (ptrace, userfaultfd, network namespaces)" >&2; exit 3; }
if [ -z "${JAVA:-}" ]; then
  jhome=$("$repo/lp" java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.home = //p')
  JAVA=$jhome/bin/java
fi
[ -x "$JAVA" ] || { echo "soak: no java found (set JAVA=/path/to/jdk25/bin/java)" >&2; exit 3; }
ip=$(command -v ip || true)
if [ "$net" = auto ]; then net=$([ -n "$ip" ] && echo netns || echo loopback); fi
[ "$net" = loopback ] || [ -n "$ip" ] || { echo "soak: --net netns needs ip (iproute2)" >&2; exit 3; }

work=$(mktemp -d /tmp/lp-soak.XXXXXX)
jtmp=$work/jvm-tmp                      # java.io.tmpdir of every JVM of the run: must end empty
mkdir -p "$jtmp" "$work/a/work" "$work/b/work" "$work/a/reports" "$work/b/reports" "$work/migrate"
# copies of the jars: a rebuild of target/ during the run must not pull them from under the JVMs
cp "$dump_jar" "$pages_jar" "$work/"
dump_jar=$work/lazy-dump.jar pages_jar=$work/lazy-pages.jar
jvm=("$JAVA" "-Djava.io.tmpdir=$jtmp" -XX:-UsePerfData)
daemon_heap=()
[ "$heap_mib" -eq 0 ] || daemon_heap=("-Xms${heap_mib}m" "-Xmx${heap_mib}m" -XX:+AlwaysPreTouch)
jcmd=$(dirname "$JAVA")/jcmd
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
hex=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
subnet=$((16#${hex:0:2}))
ns_a="" ns_b="" pid_a="" pid_b="" pid=""
failed=0 start=$SECONDS

in_ns() { # in_ns NS: sets the array $run to the prefix that runs a command in namespace NS (nothing on loopback)
  if [ -n "$1" ]; then run=("$ip" netns exec "$1"); else run=(); fi
}

cleanup() {
  local p
  for p in "$pid_a" "$pid_b"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "$pid_a" "$pid_b"; do [ -n "$p" ] && timeout 20 tail --pid="$p" -f /dev/null 2>/dev/null || true; done
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  for ns in "$ns_a" "$ns_b"; do
    [ -n "$ns" ] || continue
    for p in $("$ip" netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    "$ip" netns del "$ns" 2>/dev/null || true
  done
  if [ "$failed" -ne 0 ] || [ "$keep" -eq 1 ]; then
    echo "soak: logs, reports and work directories kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { # fail MESSAGE [FILE...]: says what failed, quotes the files' tails, exits 1
  local f
  failed=1
  [ -s "${table:-}" ] && print_table >&2
  echo "soak: FAILED: $1" >&2
  shift
  for f in "$@"; do
    [ -s "$f" ] && { echo "--- ${f#"$work"/} (last 30 lines)" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}

deadline_check() {
  [ $((SECONDS - start)) -lt $((time_limit_min * 60)) ] || fail "time limit of $time_limit_min min reached after $1 migrations"
}

# ---- network
if [ "$net" = netns ]; then
  ns_a=lp-soak-a-$hex ns_b=lp-soak-b-$hex
  addr_a=10.198.$subnet.1 addr_b=10.198.$subnet.2
  "$ip" netns add "$ns_a"
  "$ip" netns add "$ns_b"
  "$ip" link add "lps${hex}a" netns "$ns_a" type veth peer name "lps${hex}b" netns "$ns_b"
  "$ip" -n "$ns_a" addr add "$addr_a/30" dev "lps${hex}a"
  "$ip" -n "$ns_b" addr add "$addr_b/30" dev "lps${hex}b"
  for x in "$ns_a lps${hex}a" "$ns_b lps${hex}b" "$ns_a lo" "$ns_b lo"; do
    set -- $x; "$ip" -n "$1" link set "$2" up
  done
  where="network namespaces $ns_a ($addr_a) and $ns_b ($addr_b), veth pair"
else
  addr_a=127.0.0.1 addr_b=127.0.0.1
  where="loopback"
fi

# ---- daemons
start_daemon() { # start_daemon NAME NS ADDR: sets pid_NAME and port_NAME
  local name=$1 ns=$2 addr=$3 out=$work/$1/serve.out p line i
  in_ns "$ns"
  "${run[@]}" "${jvm[@]}" "${daemon_heap[@]}" -jar "$pages_jar" serve --listen "$addr:0" --token "$token" --stub "$stubs" \
      --work-dir "$work/$name/work" --report-dir "$work/$name/reports" >"$out" 2>&1 </dev/null &
  p=$!
  for ((i = 0; i < 600; i++)); do
    line=$(grep -m1 '^serving on ' "$out" || true)
    [ -n "$line" ] && break
    kill -0 "$p" 2>/dev/null || fail "daemon $name did not start" "$out"
    sleep 0.1
  done
  [ -n "$line" ] || fail "daemon $name printed no 'serving on' line within 60 s" "$out"
  printf -v "pid_$name" %s "$p"
  printf -v "port_$name" %s "$(sed -n 's/^serving on [0-9.]*:\([0-9]*\) .*/\1/p' <<<"$line")"
}
start_daemon a "$ns_a" "$addr_a"
start_daemon b "$ns_b" "$addr_b"

# ---- the workload, in A's namespace
log=$work/memtouch.log
in_ns "$ns_a"
( # only stdin, stdout and stderr: an fd inherited from whatever started this script (a pipe...) could not be migrated
  for f in /proc/$BASHPID/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
  exec "${run[@]}" setsid "$stubs/memtouch" --size-mib "$size_mib" --threads "$threads" --dirty-mib-per-sec "$rate" \
      >"$log" 2>&1 </dev/null
) &
pid=$!
disown "$pid"                           # still reaped by this shell, but no "Killed" notice when its original ends
count() { grep -c "^$1" "$log" || true; }
await_count() { # await_count PREFIX N SECONDS: until the log has N lines starting with PREFIX
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    [ "$(count "$1")" -ge "$2" ] && return 0
    sleep 0.05
  done
  return 1
}
await_count "HEARTBEAT " 1 120 || fail "memtouch (pid $pid) printed no heartbeat" "$log"
last_beat() { grep '^HEARTBEAT ' "$log" | tail -n1 | cut -d' ' -f2; }

echo "soak: $migrations migrations of memtouch ($size_mib MiB, $threads threads, $rate MiB/s dirtying, pid $pid)" \
     "between daemon A (pid $pid_a, $addr_a:$port_a) and daemon B (pid $pid_b, $addr_b:$port_b), mode $mode, $where"

# ---- measurements
table=$work/table.txt
live_heap_kib() { # live_heap_kib PID: the heap in use after a full GC, in KiB ("-" without jcmd)
  [ -x "$jcmd" ] || { echo -; return; }
  "$jcmd" "$1" GC.run >/dev/null 2>&1 || { echo -; return; }
  "$jcmd" "$1" GC.heap_info 2>/dev/null | sed -n 's/.* used \([0-9]*\)K.*/\1/p' | head -n1 | grep . || echo -
}
measure() { # measure LABEL: one row of fds, threads, VmRSS and live heap (KiB) of both daemons
  local row=$1 p heap
  for p in "$pid_a" "$pid_b"; do
    [ -d "/proc/$p" ] || fail "daemon pid $p is gone (at $1)" "$work/a/serve.out" "$work/b/serve.out"
    heap=$(live_heap_kib "$p")          # first: jcmd's attach listener thread and socket are there from the first row on
    row+=" $(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 | wc -l)"
    row+=" $(awk '/^Threads:/ {print $2}' "/proc/$p/status")"
    row+=" $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")"
    row+=" $heap"
  done
  echo "$row" >>"$table"
}
print_table() {
  printf '%-6s | %5s %5s %9s %9s | %5s %5s %9s %9s\n' "after" "A fds" "A thr" "A RSS MiB" "A heap" "B fds" "B thr" \
      "B RSS MiB" "B heap"
  awk 'function mib(k) { return k == "-" ? "-" : sprintf("%.1f", k / 1024) }
       { printf "%-6s | %5d %5d %9s %9s | %5d %5d %9s %9s\n", $1, $2, $3, mib($4), mib($5), $6, $7, mib($8), mib($9) }' "$table"
}
measure start

# ---- the migrations
modes=(hybrid post-copy pre-copy)
here=a                                  # the daemon whose namespace the process lives in
for ((i = 1; i <= migrations; i++)); do
  deadline_check $((i - 1))
  [ "$mode" = cycle ] && m=${modes[$(((i - 1) % 3))]} || m=$mode
  if [ "$here" = a ]; then to=b src_ns=$ns_a to_addr=$addr_b to_port=$port_b; else to=a src_ns=$ns_b to_addr=$addr_a to_port=$port_a; fi
  out=$work/migrate/$i.out err=$work/migrate/$i.err rep=$work/migrate/$i.json
  beat0=$(last_beat) t0=$(date +%s%N)
  rc=0
  in_ns "$src_ns"
  "${run[@]}" timeout 300 "${jvm[@]}" -jar "$dump_jar" migrate -t "$pid" --to "$to_addr:$to_port" --token "$token" \
      --mode "$m" --report "$rep" >"$out" 2>"$err" </dev/null || rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  [ "$rc" -eq 0 ] || fail "migration $i ($m, ${here^^} -> ${to^^}, pid $pid) exited $rc after $ms ms" \
      "$out" "$err" "$work/$to/serve.out" "$log"
  new=$(sed -n 's/^migrated pid [0-9]* to .* (pid \([0-9]*\) there)$/\1/p' "$out")
  [ -n "$new" ] || fail "migration $i printed no 'migrated pid' line" "$out" "$err"
  for ((w = 0; w < 600; w++)); do
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo X)
    [ "$state" = Z ] || [ "$state" = X ] && break
    sleep 0.05
  done
  [ "$state" = Z ] || [ "$state" = X ] || fail "migration $i: the original pid $pid still runs (state $state)" "$log"
  old=$pid pid=$new here=$to
  nv=$(count VERIFY)
  kill -USR1 "$pid" || fail "migration $i: pid $pid (the migrated process) is not there" "$log" "$work/$to/serve.out"
  await_count VERIFY $((nv + 1)) 120 || fail "migration $i: pid $pid printed no VERIFY line within 120 s" "$log"
  verify=$(grep '^VERIFY' "$log" | tail -n1)
  [[ $verify == "VERIFY OK"* ]] || fail "migration $i ($m, pid $old -> $pid): $verify" "$log"
  nb=$(count "HEARTBEAT ")
  await_count "HEARTBEAT " $((nb + 2)) 30 || fail "migration $i: pid $pid stopped beating" "$log"
  beat1=$(last_beat)
  [ "$beat1" -gt "$beat0" ] || fail "migration $i: heartbeat went from $beat0 to $beat1" "$log"
  for ((w = 0; w < 100; w++)); do
    [ -z "$(ls -A "$work/$to/work")" ] && break
    sleep 0.05
  done
  [ -z "$(ls -A "$work/$to/work")" ] || fail "migration $i: daemon ${to^^}'s work dir is not empty: $(ls "$work/$to/work")"
  downtime=$(sed -n 's/.*"downtime_ms" *: *\([0-9.]*\).*/\1/p' "$rep" | head -n1)
  printf 'soak: %3d  %-9s %s -> %s  pid %7d -> %7d  %6d ms  downtime %8s ms  %s  heartbeat %d -> %d\n' \
      "$i" "$m" "${old_here:-A}" "${to^^}" "$old" "$pid" "$ms" "${downtime:-?}" "$verify" "$beat0" "$beat1"
  old_here=${to^^}
  if [ $((i % 10)) -eq 0 ] || [ "$i" -eq "$warmup" ] || [ "$i" -eq "$migrations" ]; then measure "$i"; fi
done

# ---- the table and the growth bounds
echo
print_table
echo
base=$warmup
[ "$base" -eq 0 ] && base=start
baserow=$(awk -v l="$base" '$1 == l' "$table")
[ -n "$baserow" ] || baserow=$(awk -v w="$warmup" '$1 != "start" && $1 + 0 >= w + 0 { print; exit }' "$table")
endrow=$(tail -n1 "$table")
read -r bl ba_fd ba_thr ba_rss ba_heap bb_fd bb_thr bb_rss bb_heap <<<"$baserow"
read -r el ea_fd ea_thr ea_rss ea_heap eb_fd eb_thr eb_rss eb_heap <<<"$endrow"
bad=""
check_growth() { # check_growth DAEMON WHAT FROM TO MAX UNIT
  [ "$3" = - ] || [ "$4" = - ] && return 0
  local d=$(($4 - $3))
  printf 'soak: daemon %s %-7s %6s -> %6s (%+d%s, bound +%s%s)\n' "$1" "$2" "$3" "$4" "$d" "$6" "$5" "$6"
  [ "$d" -le "$5" ] || bad+=" daemon $1 $2 grew by $d$6 (bound $5$6) from migration $bl to $el;"
}
kib2mib() { [ "$1" = - ] && echo - || echo $(($1 / 1024)); }
echo "soak: growth from row '$bl' (after the warm-up) to row '$el':"
check_growth A fds "$ba_fd" "$ea_fd" "$max_fd" ""
check_growth A threads "$ba_thr" "$ea_thr" "$max_thr" ""
check_growth A RSS "$(kib2mib "$ba_rss")" "$(kib2mib "$ea_rss")" "$max_rss_mib" " MiB"
check_growth A heap "$(kib2mib "$ba_heap")" "$(kib2mib "$ea_heap")" "$max_heap_mib" " MiB"
check_growth B fds "$bb_fd" "$eb_fd" "$max_fd" ""
check_growth B threads "$bb_thr" "$eb_thr" "$max_thr" ""
check_growth B RSS "$(kib2mib "$bb_rss")" "$(kib2mib "$eb_rss")" "$max_rss_mib" " MiB"
check_growth B heap "$(kib2mib "$bb_heap")" "$(kib2mib "$eb_heap")" "$max_heap_mib" " MiB"

# ---- nothing left behind
if [ "$net" = netns ]; then
  others=""
  for ns in "$ns_a" "$ns_b"; do
    for p in $("$ip" netns pids "$ns"); do
      case "$p" in "$pid_a"|"$pid_b"|"$pid") ;; *) others+=" $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80))" ;; esac
    done
  done
  [ -z "$others" ] || bad+=" processes left in the namespaces:$others;"
fi
live=0
for f in /proc/[0-9]*/fd/1; do
  [ "$(readlink "$f" 2>/dev/null)" = "$log" ] || continue
  p=${f#/proc/} p=${p%%/*}
  [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] && continue
  live=$((live + 1))
  [ "$p" = "$pid" ] || bad+=" memtouch pid $p still runs (only $pid should);"
done
[ "$live" -eq 1 ] || bad+=" $live live memtouch processes write to the log (1 expected);"
for d in "$work/a/work" "$work/b/work" "$jtmp"; do
  [ -z "$(ls -A "$d")" ] || bad+=" left in ${d#"$work"/}: $(ls -A "$d" | head -n 5 | tr '\n' ' ');"
done
migrated=$(cat "$work"/a/reports/*.json "$work"/b/reports/*.json 2>/dev/null | grep -c '"outcome" *: *"migrated"' || true)
[ "$migrated" -eq "$migrations" ] || bad+=" the daemons reported $migrated migrations 'migrated', not $migrations;"
echo "soak: left behind: $live live memtouch (pid $pid), daemons' work dirs and JVM temp dir checked," \
     "$migrated destination reports 'migrated'"

if [ -n "$bad" ]; then
  fail "${bad# }"
fi
echo "soak: OK: $migrations migrations in $((SECONDS - start)) s, VERIFY OK after each, no growth beyond the bounds, nothing left behind"
exit 0
}
