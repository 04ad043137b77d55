# Shared by scripts/slurm-cluster.sh (one node) and scripts/slurm-nodes.sh (N nodes in
# namespaces); sourced, it only defines functions. Callers set DIR (state folder),
# MUNGE_SOCKET, DB_SOCKET and NAME (their name, for messages) first. The start_* functions
# take a command prefix that places the daemon (nothing, or `on ctl` for a namespace).

# A process that exists and is not a zombie (a container's PID 1 may reap them late).
alive() { [[ -r /proc/$1/stat && $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# Poll a readiness check for up to $1 seconds.
wait_for() {
  local seconds=$1 i
  shift
  for ((i = 0; i < seconds * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

failed() {
  echo "$NAME: error: $1 did not start; the end of $2:" >&2
  tail -n 20 "$2" >&2 2>/dev/null || true
  exit 1
}

new_munge_key() {
  if [[ ! -s $DIR/etc/munge.key ]]; then
    dd if=/dev/urandom of="$DIR/etc/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/etc/munge.key"
  fi
}

munge_ready() { munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET"; }
start_munged_with() {
  "$@" munged --socket="$MUNGE_SOCKET" --key-file="$DIR/etc/munge.key" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" --force
  wait_for 10 munge_ready || failed munged "$DIR/log/munged.log"
}

db_ready() { mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot ping; }
start_mariadbd_with() {
  if [[ ! -d $DIR/db/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$DIR/db" --user=root --skip-test-db \
      --auth-root-authentication-method=normal >"$DIR/log/mariadb-install.log" 2>&1 \
      || failed mariadb-install-db "$DIR/log/mariadb-install.log"
  fi
  # Only a local socket (no TCP port); slurmdbd finds it through MYSQL_UNIX_PORT.
  # The InnoDB lock timeout is the one slurmdbd asks for; it still logs a harmless "not
  # recommended" line about the buffer pool, kept at 128M to spare small machines' memory.
  "$@" setsid mariadbd --no-defaults --user=root --datadir="$DIR/db" --socket="$DB_SOCKET" \
    --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadbd.log" \
    --skip-networking --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
    </dev/null >/dev/null 2>&1 &
  wait_for 60 db_ready || failed mariadbd "$DIR/log/mariadbd.log"
}

# The slurm.conf settings both clusters share.
slurm_conf_common() {
  cat <<EOF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also holds a requeued job back that long (default 120 s): 30 s keeps the
# requeue tests short while leaving job steps time to launch on a busy machine.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=30
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd, no cgroups in a container: track job processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MailProg=/bin/true
ReturnToService=2
# Jobs start within a second, and time limits and kills act quickly (timeout tests).
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
KillWait=5
OverTimeLimit=0
SlurmctldTimeout=30
InactiveLimit=0
MinJobAge=300
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
EOF
}

# slurmdbd.conf (beside slurm.conf; private to SlurmUser) after the lines given.
write_slurmdbd_conf() {
  {
    printf '%s\n' "$@"
    cat <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
  } >"$DIR/etc/slurmdbd.conf.new"
  chmod 600 "$DIR/etc/slurmdbd.conf.new"
  mv "$DIR/etc/slurmdbd.conf.new" "$DIR/etc/slurmdbd.conf"
}
