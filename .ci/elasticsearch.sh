#!/usr/bin/env bash
# .ci/elasticsearch.sh -- obtain, start, stop a real Elasticsearch 8.x on 127.0.0.1
# for semsearch's integration tests (no Docker; the zip comes from Maven Central via mvn).
#
#   bash .ci/elasticsearch.sh start    # fetch with mvn (cached) + unpack + start + wait for yellow
#   bash .ci/elasticsearch.sh stop     # stop it (idempotent)
#   bash .ci/elasticsearch.sh status   # exit 0 iff the server answers healthy (green/yellow)
#   bash .ci/elasticsearch.sh url      # print http://127.0.0.1:$ES_PORT
#
# Environment knobs (all optional):
#   ES_VERSION        default 8.19.21 (newest 8.x on Maven Central at the time of writing)
#   ES_PORT           default 9200 (HTTP); transport binds 127.0.0.1, ES_TRANSPORT_PORT default 9300-9400
#   ES_WORK           default /tmp/semsearch-es (unpacked distribution, config, data, logs, pidfile)
#   SEMSEARCH_CACHE   default $HOME/.cache/semsearch (the zip is cached in $SEMSEARCH_CACHE/elasticsearch/)
#   ES_JAVA_OPTS      default "-Xms512m -Xmx1g"
#   ES_JAVA_HOME      JDK to use; default: first JDK >= 17 found (ES_JAVA_HOME, JAVA_HOME, `java` on PATH, /usr/lib/jvm/*)
#   ES_USER           unprivileged user to run as when invoked as root (default semsearch-es; created if absent)
#   ES_KEEP_DATA=1    keep $ES_WORK/data across starts (default: wiped on each fresh start)
#   ES_START_TIMEOUT  seconds to wait for yellow health (default 120)
#   ES_HUNSPELL_DIR   dir of <locale>.aff/.dic pairs copied to config/hunspell/ (default /usr/share/hunspell)
#   MVN_OPTS          extra options for `mvn` (e.g. -s settings.xml for a mirror)
#
# Findings (checked 2026-11-23: Debian 12, OpenJDK 17.0.15, 2 cores; details and exact
# error messages in .ci/ELASTICSEARCH_NOTES.md):
#   * Version: 8.19.21 = <latest>/<release> in the artifact's maven-metadata.xml (no 9.x is
#     published under this coordinate). Runs on the system JDK 17 (the zip has no JDK).
#     Python client to pair with it: elasticsearch 8.19.3 (newest 8.x on PyPI).
#   * modules/: apm, transport-netty4, x-pack-core, x-pack-security -- nothing else
#     (no analysis-common, mapper-extras, reindex, lang-painless, rest-root, x-pack-rank...).
#   * ES 8 reads ES_JAVA_HOME; JAVA_HOME is ignored with a warning, so we set ES_JAVA_HOME
#     and drop JAVA_HOME from the server's environment.
#   * Works: standard/simple/whitespace/stop/keyword analyzers; custom analyzers with the
#     standard tokenizer + lowercase/stop/shingle/hunspell filters; BM25 (default and a
#     custom k1/b `similarity`); dense_vector (dims 4, index:true, cosine) + top-level `knn`,
#     `knn` query, knn/standard retrievers, match+knn hybrid; _bulk, _mget, _msearch,
#     _count, _update (doc), highlight, PIT.
#   * Missing: `english` analyzer ("analyzer [english] has not been configured in
#     mappings"), `stemmer`/`porter_stem`/`kstem`/`snowball`/`synonym`/`asciifolding`
#     filters, whitespace/keyword/letter *tokenizers*; GET / and HEAD / answer 405 (no
#     rest-root module => Python es.ping() is False and es.info() raises; use
#     cluster.health()); _delete_by_query/_update_by_query/_reindex (no reindex module);
#     scripts ("script_lang not supported [painless]"); `rrf` retriever.
#   * English stemming can be had via the server's `hunspell` filter: dictionaries in
#     $ES_HUNSPELL_DIR (default /usr/share/hunspell, apt package hunspell-en-us) are copied
#     into config/hunspell/<locale>/ at start.
#   * Settings: xpack.ml.enabled/xpack.watcher.enabled are accepted (x-pack-core registers
#     them) but pointless; settings of absent modules, e.g. ingest.geoip.downloader.enabled,
#     are fatal ("unknown setting [...]"), so none are set.
#   * Bootstrap checks (vm.max_map_count = 65530 here) are not enforced: loopback binding
#     and discovery.type=single-node.
#   * Timings here: cold start (fetch 102 MB + unpack + start) 11-29 s; warm start
#     (zip cached) 8-17 s; `start` when already running 0.04 s; stop ~2 s.
set -euo pipefail

ES_VERSION="${ES_VERSION:-8.19.21}"
ES_PORT="${ES_PORT:-9200}"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-9300-9400}"
ES_WORK="${ES_WORK:-/tmp/semsearch-es}"
CACHE_DIR="${SEMSEARCH_CACHE:-$HOME/.cache/semsearch}/elasticsearch"
ES_USER="${ES_USER:-semsearch-es}"
ES_START_TIMEOUT="${ES_START_TIMEOUT:-120}"
ES_JAVA_OPTS_DEFAULT="-Xms512m -Xmx1g"

ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${ES_VERSION}:zip"
ZIP="${CACHE_DIR}/elasticsearch-${ES_VERSION}.zip"
ES_HOME="${ES_WORK}/elasticsearch-${ES_VERSION}"
PIDFILE="${ES_WORK}/elasticsearch.pid"
URL="http://127.0.0.1:${ES_PORT}"

log() { echo "[elasticsearch.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- helpers
java_major() {  # $1 = java binary -> prints major version (e.g. 17) or nothing
  "$1" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\)[."].*/\1/p' | head -n1
}

find_java_home() {
  local cand=() j home major
  [[ -n "${ES_JAVA_HOME:-}" ]] && cand+=("$ES_JAVA_HOME")
  [[ -n "${JAVA_HOME:-}" ]] && cand+=("$JAVA_HOME")
  if j="$(command -v java 2>/dev/null)"; then
    j="$(readlink -f "$j")"            # /usr/lib/jvm/java-17-openjdk-amd64/bin/java
    cand+=("$(dirname "$(dirname "$j")")")
  fi
  for home in /usr/lib/jvm/*; do [[ -d "$home" ]] && cand+=("$home"); done
  for home in "${cand[@]}"; do
    [[ -x "$home/bin/java" ]] || continue
    major="$(java_major "$home/bin/java")"
    if [[ -n "$major" && "$major" -ge 17 ]]; then
      echo "$home"; return 0
    fi
  done
  return 1
}

read_pid() { [[ -s "$PIDFILE" ]] && tr -dc '0-9' <"$PIDFILE" || true; }

pid_alive() {  # pid from the pidfile is alive *and* is an Elasticsearch JVM (guards pid reuse)
  local p; p="$(read_pid)"
  [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 1
  [[ -r "/proc/$p/cmdline" ]] || return 0
  tr '\0' ' ' <"/proc/$p/cmdline" | grep -q 'org.elasticsearch'
}

healthy() {  # cluster answers with status green/yellow within a few seconds
  local body
  body="$(curl -fsS -m 10 "${URL}/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null)" || return 1
  [[ "$body" == *'"status":"green"'* || "$body" == *'"status":"yellow"'* ]]
}

# ---------------------------------------------------------------- download
fetch_zip() {
  [[ -s "$ZIP" ]] && return 0
  command -v mvn >/dev/null || die "mvn (Maven) is required to fetch $ARTIFACT"
  mkdir -p "$CACHE_DIR"
  local tmpd; tmpd="$(mktemp -d "${CACHE_DIR}/mvn.XXXXXX")"
  log "fetching ${ARTIFACT} with mvn dependency:copy"
  # shellcheck disable=SC2086
  mvn -q -B -Dstyle.color=never ${MVN_OPTS:-} dependency:copy \
      -Dartifact="$ARTIFACT" -DoutputDirectory="$tmpd" >&2 \
    || { rm -rf "$tmpd"; die "mvn dependency:copy could not fetch $ARTIFACT"; }
  mv -f "$tmpd/elasticsearch-${ES_VERSION}.zip" "$ZIP"
  rm -rf "$tmpd"
  log "cached $ZIP ($(du -h "$ZIP" | cut -f1))"
}

unpack() {
  [[ -x "$ES_HOME/bin/elasticsearch" && -f "$ES_HOME/.semsearch-unpacked" ]] && return 0
  log "unpacking into $ES_HOME"
  rm -rf "$ES_HOME" "${ES_HOME}.tmp"
  mkdir -p "${ES_HOME}.tmp"
  if command -v unzip >/dev/null; then
    unzip -q "$ZIP" -d "${ES_HOME}.tmp"
  elif command -v python3 >/dev/null; then
    python3 - "$ZIP" "${ES_HOME}.tmp" <<'PY'
import os, stat, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
PY
  else
    die "need unzip or python3 to unpack $ZIP"
  fi
  mv "${ES_HOME}.tmp/elasticsearch-${ES_VERSION}" "$ES_HOME"
  rmdir "${ES_HOME}.tmp"
  touch "$ES_HOME/.semsearch-unpacked"
}

ensure_user() {
  id -u "$ES_USER" >/dev/null 2>&1 && return 0
  log "creating system user $ES_USER"
  local nologin; nologin="$(command -v nologin || echo /bin/false)"
  useradd --system --no-create-home --home-dir "$ES_WORK" --shell "$nologin" "$ES_USER" 2>/dev/null \
    || adduser --system --no-create-home --home "$ES_WORK" --shell "$nologin" "$ES_USER" >/dev/null 2>&1 \
    || id -u "$ES_USER" >/dev/null 2>&1 \
    || die "could not create user $ES_USER"
}

write_config() {
  local conf="$ES_WORK/config"
  rm -rf "$conf"
  cp -r "$ES_HOME/config" "$conf"
  cat >"$conf/elasticsearch.yml" <<EOF
# generated by .ci/elasticsearch.sh
cluster.name: semsearch-ci
node.name: semsearch-ci-node
discovery.type: single-node
network.host: 127.0.0.1
http.port: ${ES_PORT}
transport.port: ${ES_TRANSPORT_PORT}
path.data: ${ES_WORK}/data
path.logs: ${ES_WORK}/logs
path.repo: ${ES_WORK}/snapshots
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOF
  # Optional English stemming without analysis-common: the server's built-in `hunspell`
  # token filter reads dictionaries from $ES_PATH_CONF/hunspell/<locale>/ at start-up.
  # Debian: `apt-get install hunspell-en-us` puts en_US.aff/.dic in /usr/share/hunspell.
  local hdir="${ES_HUNSPELL_DIR:-/usr/share/hunspell}" aff loc
  if [[ -d "$hdir" ]]; then
    for aff in "$hdir"/*.aff; do
      [[ -f "$aff" && -f "${aff%.aff}.dic" ]] || continue
      loc="$(basename "${aff%.aff}")"
      mkdir -p "$conf/hunspell/$loc"
      cp -L "$aff" "${aff%.aff}.dic" "$conf/hunspell/$loc/"
    done
  fi
}

# ---------------------------------------------------------------- commands
cmd_start() {
  if pid_alive && healthy; then
    log "already running (pid $(read_pid))"
    echo "$URL"; return 0
  fi
  if healthy; then
    die "something not started by this script already answers on $URL (pid file: $PIDFILE); set ES_PORT"
  fi
  if pid_alive; then   # started but unhealthy/stuck: restart cleanly
    log "pid $(read_pid) alive but unhealthy; restarting"
    cmd_stop
  fi
  rm -f "$PIDFILE"

  command -v curl >/dev/null || die "curl is required"
  local java_home
  java_home="$(find_java_home)" || die "no JDK >= 17 found (set ES_JAVA_HOME)"

  fetch_zip
  mkdir -p "$ES_WORK"
  unpack
  write_config
  if [[ "${ES_KEEP_DATA:-0}" != 1 ]]; then rm -rf "$ES_WORK/data" "$ES_WORK/snapshots"; fi
  mkdir -p "$ES_WORK/data" "$ES_WORK/logs" "$ES_WORK/tmp" "$ES_WORK/snapshots"
  : >"$ES_WORK/logs/stdout.log"

  local runner=()
  if [[ "$(id -u)" == 0 ]]; then
    ensure_user
    chown -R "$ES_USER:" "$ES_WORK"
    chmod 755 "$ES_WORK"
    if command -v runuser >/dev/null; then runner=(runuser -u "$ES_USER" --)
    else runner=(su -s /bin/sh "$ES_USER" -c '"$0" "$@"' --); fi
  fi

  log "starting Elasticsearch ${ES_VERSION} (ES_JAVA_HOME=$java_home) on $URL"
  # bin/elasticsearch -d: the CLI forks the server, waits until it has bootstrapped,
  # then exits (non-zero on startup failure); -p makes the *server* write its pid.
  local rc=0
  (
    cd "$ES_WORK"
    ${runner[@]+"${runner[@]}"} env -u JAVA_HOME \
      ES_JAVA_HOME="$java_home" \
      ES_PATH_CONF="$ES_WORK/config" \
      ES_TMPDIR="$ES_WORK/tmp" \
      ES_JAVA_OPTS="${ES_JAVA_OPTS:-$ES_JAVA_OPTS_DEFAULT}" \
      timeout "$ES_START_TIMEOUT" "$ES_HOME/bin/elasticsearch" -d -p "$PIDFILE" \
      >>"$ES_WORK/logs/stdout.log" 2>&1 </dev/null
  ) || rc=$?

  local deadline=$((SECONDS + ES_START_TIMEOUT))
  until healthy; do
    if [[ "$rc" != 0 ]] || ! pid_alive || ((SECONDS >= deadline)); then
      log "Elasticsearch failed to become healthy (launcher rc=$rc, pid=$(read_pid))"
      log "---- error lines from $ES_WORK/logs/stdout.log"
      grep -E 'ERROR|FATAL|fatal|Caused by|unknown setting' "$ES_WORK/logs/stdout.log" | head -n 20 | cut -c1-400 >&2 || true
      log "---- $ES_WORK/logs/stdout.log (tail)"
      tail -n 40 "$ES_WORK/logs/stdout.log" >&2 || true
      log "---- $ES_WORK/logs/semsearch-ci.log (tail)"
      tail -n 40 "$ES_WORK/logs/semsearch-ci.log" >&2 2>/dev/null || true
      cmd_stop || true
      exit 1
    fi
    sleep 1
  done
  log "healthy (pid $(read_pid))"
  echo "$URL"
}

cmd_stop() {
  local pid; pid="$(read_pid)"
  if [[ -z "$pid" ]] || ! pid_alive; then
    rm -f "$PIDFILE"; log "not running"; return 0
  fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still alive after 30 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  if healthy; then
    log "healthy at $URL (pid $(read_pid))"; return 0
  fi
  log "not healthy at $URL"; return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  url) echo "$URL" ;;
  unpack) fetch_zip; mkdir -p "$ES_WORK"; unpack; echo "$ES_HOME" ;;  # for .ci/es-cluster.sh
  *) echo "usage: $0 {start|stop|status|restart|url|unpack}" >&2; exit 2 ;;
esac
