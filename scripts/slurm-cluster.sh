#!/usr/bin/env bash
# A real single-node Slurm cluster for trying and testing the suite on one machine:
# munged, MariaDB, slurmdbd (so that sacct works), slurmctld and slurmd, from Debian
# packages, without systemd, with all configuration and state in one folder.
#
#   scripts/slurm-cluster.sh start    install packages if missing (root + apt), start (idempotent)
#   scripts/slurm-cluster.sh stop     cancel its jobs, stop the daemons whose pid files it wrote
#   scripts/slurm-cluster.sh status   which daemons run; exit 0 only when the cluster answers
#   scripts/slurm-cluster.sh env      print `export SLURM_CONF=...` (eval "$(... env)")
#   scripts/slurm-cluster.sh purge    stop, then delete the state folder
#   scripts/slurm-cluster.sh install  only install the packages (root + apt) if missing
#
# With --nodes N (`start --nodes 2`, `stop --nodes`, `run-on HOST CMD…`), the command goes
# to scripts/slurm-nodes.sh instead: a separate N-node cluster in network namespaces with
# its own state folder (/tmp/hpc-mnode); the single-node cluster here is left alone.
#
# Clients find this cluster through SLURM_CONF (printed by `env`): nothing is written to
# /etc, so a machine's own Slurm (if any) is left alone and `purge` leaves no trace.
#
# Settings (environment): HPC_SLURM_DIR (state folder, default /tmp/hpc-slurm),
# HPC_SLURM_CPUS (CPUs the node advertises, default 8, so 4-rank jobs fit on 2 cores),
# HPC_SLURM_PORT (first of three TCP ports: slurmctld, slurmd, slurmdbd; default 6817),
# HPC_SLURM_NO_INSTALL=1 (never run apt-get).
#
# Exit codes: 0 ok; 1 a daemon failed to start (its log is printed); 3 this machine cannot
# run the cluster (not root, no apt, packages missing): the reason is printed, and
# `make test` skips the Slurm tests with it.
set -euo pipefail

# The multi-node cluster is another script with another state folder.
if [[ ${1:-} = run-on || " $* " =~ \ --nodes([= ]|$) ]]; then
  args=()
  for a in "$@"; do [[ $a = --nodes && ${1:-} != start ]] || args+=("$a"); done
  exec bash "$(dirname "${BASH_SOURCE[0]}")/slurm-nodes.sh" "${args[@]}"
fi

DIR=${HPC_SLURM_DIR:-/tmp/hpc-slurm}
CPUS=${HPC_SLURM_CPUS:-8}
PORT=${HPC_SLURM_PORT:-6817}
CLUSTER=hpclocal
PARTITION=debug
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server openmpi-bin libopenmpi-dev libpmix-dev)
# The programs that tell whether the packages above are installed.
PROGRAMS=(munged mungekey mariadbd mariadb-install-db mariadb-admin slurmdbd slurmctld slurmd
          sbatch srun sacct sacctmgr scontrol sinfo mpirun)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # start order; stop is the reverse

cannot() { echo "slurm-cluster: cannot run here: $*" >&2; exit 3; }
say() { echo "slurm-cluster: $*" >&2; }

[[ $DIR = /* ]] || cannot "HPC_SLURM_DIR must be an absolute path, got '$DIR'"
[[ $DIR =~ ^[A-Za-z0-9_./-]+$ ]] || cannot "HPC_SLURM_DIR may hold only letters, digits and ._/-"
[[ $CPUS =~ ^[1-9][0-9]*$ ]] || cannot "HPC_SLURM_CPUS must be a positive number, got '$CPUS'"
[[ $PORT =~ ^[1-9][0-9]*$ ]] && ((PORT < 65534)) || cannot "HPC_SLURM_PORT must be a TCP port"

CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket
DB_SOCKET=$DIR/mysql/mysqld.sock
NODE=$(hostname -s)
export SLURM_CONF=$CONF

NAME=slurm-cluster
# shellcheck source=scripts/slurm-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm-lib.sh"

pidfile() { echo "$DIR/run/$1.pid"; }

# The pid in a daemon's pid file, if that process is alive and is that daemon (a stale
# pid file whose number was reused by another program does not count).
running_pid() {
  local file pid
  file=$(pidfile "$1")
  [[ -s $file ]] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [[ -n $pid ]] && alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm") == "$1"* ]] || return 1
  echo "$pid"
}

missing_programs() {
  local p missing=()
  for p in "${PROGRAMS[@]}"; do command -v "$p" >/dev/null || missing+=("$p"); done
  echo "${missing[*]}"
}

install_packages() {
  local missing
  missing=$(missing_programs)
  [[ -z $missing ]] && return 0
  [[ ${HPC_SLURM_NO_INSTALL:-0} = 1 ]] && cannot "missing $missing and HPC_SLURM_NO_INSTALL=1"
  [[ $(id -u) = 0 ]] || cannot "missing $missing; as root, this script installs: ${PACKAGES[*]}"
  command -v apt-get >/dev/null || cannot "missing $missing and no apt-get to install them"
  say "installing ${PACKAGES[*]} (missing: $missing)"
  # Debian's maintainer scripts would start the system's own munge, MariaDB and Slurm
  # services; a policy-rc.d that denies every start keeps them down (only while installing,
  # and only if the machine has none of its own).
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  local ok=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } || ok=$?
  ((own_policy)) && rm -f "$policy"
  ((ok == 0)) || cannot "apt-get install ${PACKAGES[*]} failed"
  missing=$(missing_programs)
  [[ -z $missing ]] || cannot "still missing after apt-get: $missing"
}

write_config() {
  mkdir -p "$DIR"/{etc,run,log,munge,mysql,db,state} "$DIR/spool/slurmd-$NODE"
  chmod 755 "$DIR" "$DIR/munge"
  new_munge_key
  # The node advertises HPC_SLURM_CPUS CPUs whatever the machine has
  # (SlurmdParameters=config_overrides), so that multi-rank jobs fit on a small machine.
  local mem
  mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
  cat >"$CONF.new" <<EOF
# Written by scripts/slurm-cluster.sh; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmdPidFile=$(pidfile slurmd)
SlurmdLogFile=$DIR/log/slurmd.log
# Debian's Open MPI speaks PMIx, not PMI-2.
MpiDefault=pmix
MessageTimeout=10
SlurmdTimeout=60
JobRequeue=1
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
$(slurm_conf_common)
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.new" "$CONF"
  write_slurmdbd_conf DbdHost=localhost DbdAddr=127.0.0.1 "DbdPort=$((PORT + 2))"
}

start_munged() { start_munged_with; }
start_mariadbd() { start_mariadbd_with; }

dbd_ready() { sacctmgr -n -P show cluster format=cluster; }
start_slurmdbd() {
  MYSQL_UNIX_PORT=$DB_SOCKET slurmdbd
  wait_for 30 dbd_ready || failed slurmdbd "$DIR/log/slurmdbd.log"
  # Register the cluster before slurmctld first connects, so that its jobs are recorded.
  if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
}

ctld_ready() { scontrol ping | grep -q UP; }
start_slurmctld() {
  slurmctld
  wait_for 30 ctld_ready || failed slurmctld "$DIR/log/slurmctld.log"
}

node_ready() { [[ $(sinfo -h -n "$NODE" -o %T) =~ ^(idle|mixed|allocated) ]]; }
start_slurmd() {
  slurmd -N "$NODE"
  if ! wait_for 30 node_ready; then
    # A node left DOWN/DRAINED by an earlier unclean stop comes back by hand.
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    wait_for 15 node_ready || failed slurmd "$DIR/log/slurmd.log"
  fi
}

cmd_start() {
  install_packages
  [[ $(id -u) = 0 ]] || cannot "slurmd must run as root to start jobs as their users"
  write_config
  local d started=()
  for d in "${DAEMONS[@]}"; do
    if running_pid "$d" >/dev/null; then continue; fi
    "start_$d"
    started+=("$d")
  done
  if ((${#started[@]})); then
    say "started ${started[*]}; partition '$PARTITION', $CPUS CPUs on node $NODE"
  else
    say "already running"
  fi
  say "clients need: export SLURM_CONF=$CONF   (or: eval \"\$($0 env)\")"
}

# Stop one daemon by the pid its pid file names; SIGKILL after a grace period.
stop_daemon() {
  local pid i
  pid=$(running_pid "$1") || { rm -f "$(pidfile "$1")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$(pidfile "$1")"
  say "stopped $1 (pid $pid)"
}

cmd_stop() {
  [[ -d $DIR ]] || { say "nothing to stop ($DIR does not exist)"; return 0; }
  # Its own jobs first, so that no job step outlives the daemons that manage it.
  if running_pid slurmctld >/dev/null && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
    squeue -h -o %i | xargs -r scancel >/dev/null 2>&1 || true
    wait_for 15 test -z "$(squeue -h -t running,completing -o %i)" || true
  fi
  local i
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMONS[i]}"; done
}

cmd_status() {
  local d pid ok=0
  for d in "${DAEMONS[@]}"; do
    if pid=$(running_pid "$d"); then echo "$d: running (pid $pid)"; else echo "$d: stopped"; ok=1; fi
  done
  echo "SLURM_CONF=$CONF"
  if ((ok == 0)); then sinfo; else return 1; fi
}

cmd_purge() {
  cmd_stop
  rm -rf "$DIR"
  say "removed $DIR"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  purge) cmd_purge ;;
  install) install_packages ;;
  *) echo "usage: $0 start|stop|status|env|purge|install [--nodes N]" >&2; exit 2 ;;
esac
