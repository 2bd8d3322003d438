#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, with accounting, for pr1's tests and local sweeps.
#
# Usage (as root):
#   bash slurm/local-cluster.sh up       # install if missing, configure, start, wait until the node is idle
#   bash slurm/local-cluster.sh status   # the daemons this script started, and `sinfo`
#   bash slurm/local-cluster.sh down     # cancel jobs still queued, stop exactly the daemons `up` started
#
# `up` is idempotent: it starts only the daemons that are not already running, so `up` twice is fine and
# `down` then `up` brings the same cluster back (job ids and accounting persist).
#
# What `up` sets up:
#   - apt packages slurm-wlm munge slurmdbd mariadb-server (only when missing; services are not auto-started)
#   - /etc/munge/munge.key (random, created once) and munged running as the munge user
#   - /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf (Slurm's clients read /etc/slurm, so sbatch, sinfo,
#     sacct and submitit need no extra environment). It refuses to overwrite files it did not write.
#   - cluster "pr1local", one node (this host, CPUs=$(nproc)), partition "cpu" (default); no cgroups needed
#   - a private MariaDB (own datadir, 127.0.0.1:$PR1_SLURM_DB_PORT) + slurmdbd, so `sacct` reports job states
#   - JobRequeue=1, so submitit's preemption/timeout handling (`scontrol requeue` on USR2) requeues jobs;
#     cred_expire=10 and sched_interval=2 let a requeued job start again ~12 s later (default: over 2 min)
#
# Environment:
#   PR1_SLURM_DIR      state, spool, logs, pids and the database (default /tmp/pr1-slurm)
#   PR1_SLURM_DB_PORT  TCP port of the private MariaDB on 127.0.0.1 (default 3307)
#   PR1_SLURM_TIMEOUT  seconds to wait for each daemon to become ready (default 60)
#
# Logs: $PR1_SLURM_DIR/log/*.log (printed automatically when `up` fails).
# slurmd logs "can not load PMIx library"; that is harmless (no MPI is configured).
set -euo pipefail

readonly CLUSTER=pr1local
readonly PARTITION=cpu
readonly PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
readonly MARKER="# Written by pr1 slurm/local-cluster.sh"
readonly DIR="${PR1_SLURM_DIR:-/tmp/pr1-slurm}"
readonly DB_PORT="${PR1_SLURM_DB_PORT:-3307}"
readonly TIMEOUT="${PR1_SLURM_TIMEOUT:-60}"
readonly PIDS="$DIR/run/daemons.pids" # one line per daemon: name pid starttime
readonly DB_SOCKET="$DIR/mysql/mysqld.sock"
readonly SLURM_CONF=/etc/slurm/slurm.conf
readonly SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
# Start order; `down` stops them in reverse.
readonly DAEMONS=(munged mysqld slurmdbd slurmctld slurmd)

log() { printf '[local-cluster] %s\n' "$*" >&2; }

die() {
  log "ERROR: $*"
  local f
  for f in "$DIR"/log/*.log; do
    [[ -s $f ]] || continue
    printf '\n===== last 40 lines of %s =====\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
  exit 1
}

require_root() {
  [[ $EUID -eq 0 ]] || { log "ERROR: must run as root (it installs packages and starts daemons)"; exit 1; }
}

# --- pid bookkeeping: a pid is ours only if its start time matches the one recorded -----------------------

start_time() { # pid -> its start time (field 22 of /proc/PID/stat), or nothing if gone or a zombie
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  read -r -a stat <<<"${stat##*) }" # the fields after "PID (COMM) ", from field 3 (state) on
  [[ ${stat[0]} != Z ]] && echo "${stat[19]}"
  return 0
}

recorded() { # name -> "pid starttime" or nothing
  [[ -f $PIDS ]] && awk -v n="$1" '$1 == n {print $2, $3}' "$PIDS"
  return 0
}

running() { # name: is the daemon we recorded still alive?
  local pid start
  read -r pid start <<<"$(recorded "$1")"
  [[ -n ${pid:-} && "$(start_time "$pid")" == "$start" ]]
}

record() { # name pid
  local tmp
  tmp=$(mktemp "$DIR/run/pids.XXXXXX")
  { [[ -f $PIDS ]] && awk -v n="$1" '$1 != n' "$PIDS"; echo "$1 $2 $(start_time "$2")"; } >"$tmp"
  mv "$tmp" "$PIDS"
}

# Every daemon runs in the foreground (no log file of its own) and logs to stderr, captured in $DIR/log/NAME.log.
launch() { # name command...: start a daemon in its own session unless the one we started is still running
  local name=$1
  shift
  if running "$name"; then
    log "$name already running (pid $(recorded "$name" | cut -d' ' -f1))"
    return
  fi
  # setsid execs in place (a background job is not a group leader), so $! is the daemon's own pid.
  setsid "$@" >>"$DIR/log/$name.log" 2>&1 </dev/null &
  local pid=$!
  sleep 0.2
  [[ -n $(start_time "$pid") ]] || die "$name exited right after starting: $*"
  record "$name" "$pid"
  log "started $name (pid $pid)"
}

wait_for() { # name description command...: poll until the command succeeds
  local name=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    running "$name" || die "$name died while waiting for $what"
    ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.5
  done
}

# --- installation and configuration ----------------------------------------------------------------------

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  # Keep the packages' maintainer scripts from starting services: this script starts and tracks its own.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  } </dev/null || rc=$?
  ((own_policy)) && rm -f "$policy"
  ((rc == 0)) || die "apt-get failed (exit $rc) installing ${missing[*]}"
}

CONF_CHANGED=0
write_conf() { # path mode: write stdin to path, unless path exists and was not written by this script
  local path=$1 mode=$2
  if [[ -e $path ]] && ! grep -qF "$MARKER" "$path"; then
    die "$path exists and was not written by this script; move it away to use the local cluster"
  fi
  mkdir -p "$(dirname "$path")"
  local tmp
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  cmp -s "$tmp" "$path" || CONF_CHANGED=1
  mv "$tmp" "$path"
}

configure() {
  mkdir -p "$DIR"/{run,log,state,spool,mysql}
  chmod 755 "$DIR"

  local key=/etc/munge/munge.key
  if [[ ! -s $key ]]; then
    log "creating $key"
    dd if=/dev/urandom bs=1 count=1024 of="$key" status=none
  fi
  chown munge:munge "$key"
  chmod 400 "$key"

  local host mem_mb
  host=$(hostname -s)
  # RealMemory a bit under the machine's, or slurmd drains the node for "Low RealMemory".
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)

  write_conf "$SLURM_CONF" 644 <<EOF
$MARKER; regenerated by every \`up\`.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs that ask for no memory get this much per CPU instead of the whole node, so sweeps run side by side.
DefMemPerCPU=1024
ReturnToService=2
# submitit requeues preempted/timed-out jobs with \`scontrol requeue\`. A requeued job may start again only
# once the credentials of its last run expired (default 120 s); 10 s keeps preemption tests quick.
JobRequeue=1
AuthInfo=cred_expire=10
# Test pending jobs every 2 s (default 60 s): a requeued job becoming eligible triggers no scheduling pass.
SchedulerParameters=sched_interval=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

  local pass_file="$DIR/mysql/slurm.pass"
  if [[ ! -s $pass_file ]]; then
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$pass_file")
  fi
  write_conf "$SLURMDBD_CONF" 600 <<EOF
$MARKER; regenerated by every \`up\`.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$pass_file")
StorageLoc=slurm_acct_db
EOF
}

# --- daemons ---------------------------------------------------------------------------------------------

munge_works() { munge -n </dev/null | unmunge >/dev/null; }

start_munged() {
  if ! running munged && munge_works 2>/dev/null; then
    log "a munged not started by this script is already running; using it"
    return
  fi
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
  launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
  wait_for munged "munge to answer" munge_works
}

db() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot "$@"; }

start_mysqld() {
  local data="$DIR/mysql/data"
  chown mysql:mysql "$DIR/mysql"
  if [[ ! -d $data/mysql ]]; then
    log "initialising MariaDB in $data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$data" --auth-root-authentication-method=socket \
      --skip-test-db >>"$DIR/log/mysqld.log" 2>&1 || die "mariadb-install-db failed"
  fi
  launch mysqld /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$data" --socket="$DB_SOCKET" \
    --pid-file="$DIR/mysql/mysqld.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
    --innodb-buffer-pool-size=64M
  wait_for mysqld "MariaDB on $DB_SOCKET" db -e 'SELECT 1'
  local pass
  pass=$(cat "$DIR/mysql/slurm.pass")
  db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
         CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "could not create the slurm database"
}

cluster_registered() { [[ -n "$(sacctmgr -n -P show cluster "$CLUSTER" format=cluster)" ]]; }

start_slurmdbd() {
  launch slurmdbd /usr/sbin/slurmdbd -D
  wait_for slurmdbd "slurmdbd to answer" sacctmgr -n show cluster
  if ! cluster_registered; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr could not add cluster $CLUSTER"
    log "registered cluster $CLUSTER in the accounting database"
  fi
}

node_idle() { [[ "$(sinfo -h -N -p "$PARTITION" -o %t)" == idle* ]]; }

start_slurm() {
  launch slurmctld /usr/sbin/slurmctld -D
  wait_for slurmctld "slurmctld to answer" scontrol ping
  launch slurmd /usr/sbin/slurmd -D
  wait_for slurmd "the node to be idle in partition $PARTITION" node_idle
}

# --- subcommands -----------------------------------------------------------------------------------------

up() {
  require_root
  install_packages
  configure
  if ((CONF_CHANGED)) && running slurmctld; then
    log "WARNING: the configuration changed while the cluster runs; \`down\` then \`up\` to apply it"
  fi
  start_munged
  start_mysqld
  start_slurmdbd
  start_slurm
  log "cluster $CLUSTER is up:"
  sinfo
}

down() {
  require_root
  if running slurmctld; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      log "cancelling jobs still in the queue: $(echo "$jobs" | tr '\n' ' ')"
      # shellcheck disable=SC2086 # one argument per job id
      scancel $jobs || true
    fi
  fi
  local i name pid start deadline
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    name=${DAEMONS[i]}
    running "$name" || continue
    read -r pid start <<<"$(recorded "$name")"
    kill -TERM "$pid"
    deadline=$((SECONDS + 30))
    while running "$name" && ((SECONDS < deadline)); do sleep 0.2; done
    if running "$name"; then
      log "$name (pid $pid) ignored SIGTERM for 30s; killing it"
      kill -KILL "$pid"
    fi
    log "stopped $name (pid $pid)"
  done
  rm -f "$PIDS"
}

status() {
  local name up=1
  for name in "${DAEMONS[@]}"; do
    if running "$name"; then
      printf '%-10s running (pid %s)\n' "$name" "$(recorded "$name" | cut -d' ' -f1)"
    elif [[ $name == munged ]] && munge_works 2>/dev/null; then
      printf '%-10s answering (not started by this script)\n' "$name"
    else
      printf '%-10s not running\n' "$name"
      up=0
    fi
  done
  sinfo 2>&1 || true
  ((up))
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
