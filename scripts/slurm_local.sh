#!/usr/bin/env bash
# Single-node SLURM on localhost (Debian slurm-wlm + munge), for the SLURM end-to-end test.
#
#   scripts/slurm_local.sh start    # bring up munged, slurmctld, slurmd; wait until the node is idle (no-op if up)
#   scripts/slurm_local.sh stop     # stop slurmd, slurmctld, munged (only the ones started from our pid files)
#   scripts/slurm_local.sh status   # print daemon/node state; exit 0 iff the node is usable
#
# Must run as root (it writes /etc/slurm/slurm.conf and starts daemons). No accounting (no slurmdbd):
# `sacct` does not work on this cluster; see tests/harness/test_slurm_cluster.py for what submitit does then.
# Environment knobs: SLURM_LOCAL_PARTITION (default: debug), SLURM_LOCAL_WAIT_S (default: 60),
# SLURM_LOCAL_FORCE=1 (overwrite an /etc/slurm/slurm.conf this script did not write; a backup is kept).
set -euo pipefail

PARTITION="${SLURM_LOCAL_PARTITION:-debug}"
WAIT_S="${SLURM_LOCAL_WAIT_S:-60}"
CONF=/etc/slurm/slurm.conf
MARKER="# written by FERbench scripts/slurm_local.sh"
LOGDIR=/var/log/slurm
CTLD_LOG=$LOGDIR/slurmctld.log
SLURMD_LOG=$LOGDIR/slurmd.log
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key

log() { echo "slurm_local: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pid_alive() {  # pid_alive PIDFILE: the pid file names a live slurmctld/slurmd/munged (not a recycled pid)
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  kill -0 "$pid" 2>/dev/null || return 1
  case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
    slurmctld|slurmd|munged) return 0 ;;
    *) return 1 ;;
  esac
}

node_state() {  # prints the node's state (e.g. idle, mix, down*), empty if slurmctld does not answer
  timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true
}

node_usable() {
  case "$(node_state)" in
    idle|mixed|allocated|completing) return 0 ;;
    *) return 1 ;;
  esac
}

print_logs() {
  for f in "$CTLD_LOG" "$SLURMD_LOG" /var/log/munge/munged.log; do
    if [ -f "$f" ]; then
      echo "----- tail -n 30 $f -----" >&2
      tail -n 30 "$f" >&2
    fi
  done
}

require_tools() {
  local t
  for t in munged munge unmunge slurmctld slurmd sinfo scontrol; do
    command -v "$t" >/dev/null 2>&1 || die "'$t' not found; install the Debian packages: apt-get install slurm-wlm munge"
  done
  [ "$(id -u)" = 0 ] || die "must run as root"
}

start_munge() {
  if [ ! -s "$MUNGE_KEY" ]; then
    log "creating munge key $MUNGE_KEY"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
      mungekey --create --keyfile="$MUNGE_KEY" --force
    else
      dd if=/dev/urandom bs=1 count=1024 of="$MUNGE_KEY" status=none
    fi
  fi
  chown munge:munge /etc/munge "$MUNGE_KEY"
  chmod 0700 /etc/munge
  chmod 0400 "$MUNGE_KEY"
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  chmod 0700 /var/log/munge
  if pid_alive "$MUNGE_PID" && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  log "starting munged"
  # munged refuses to run as root without --force; run it as the munge user, like the Debian service does.
  runuser -u munge -- /usr/sbin/munged || { print_logs; die "munged failed to start"; }
  local i
  for i in $(seq 1 50); do
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  print_logs
  die "munge does not work (munge -n | unmunge fails)"
}

write_conf() {
  local host cpus mem line
  host="$(hostname -s)"
  line="$(slurmd -C | head -n1)"
  cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$line")"
  mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$line")"
  [ -n "$cpus" ] && [ -n "$mem" ] || die "could not parse 'slurmd -C': $line"
  # Topology as slurmd sees it (Boards/Sockets/Cores/Threads), with NodeName/NodeAddr fixed to this host.
  local topo
  topo="$(grep -o 'CPUs=[0-9]* Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$line" || echo "CPUs=$cpus")"
  local defmem=$(( mem / cpus ))

  if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    if [ "${SLURM_LOCAL_FORCE:-0}" = 1 ]; then
      cp -p "$CONF" "$CONF.bak.$(date +%s)"
      log "overwriting foreign $CONF (backup kept)"
    else
      die "$CONF exists and was not written by this script; refusing to overwrite (set SLURM_LOCAL_FORCE=1)"
    fi
  fi
  mkdir -p /etc/slurm "$LOGDIR" /var/spool/slurmctld /var/spool/slurmd
  local tmp
  tmp="$(mktemp)"
  cat >"$tmp" <<EOF
$MARKER
# Single-node test cluster. Regenerated on every 'start'; edit the script, not this file.
ClusterName=localcluster
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire seconds before it may start again (default 120 s); keep requeue tests fast
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in containers: track job processes through /proc parent links, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# no slurmdbd: no accounting (sacct will not work)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# look at pending jobs (e.g. requeued ones whose BeginTime passed) every few seconds instead of 30-60 s
SchedulerParameters=bf_interval=2,sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
# jobs may be requeued (submitit preemption/timeout handling uses 'scontrol requeue')
JobRequeue=1
KillWait=30
MinJobAge=300
InactiveLimit=0
Waittime=0
SlurmdTimeout=300
# trust the node definition below even if slurmd measures slightly less memory
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 $topo RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE DefaultTime=7-00:00:00 State=UP OverSubscribe=NO
EOF
  CONF_CHANGED=0
  if ! cmp -s "$tmp" "$CONF" 2>/dev/null; then
    install -m 0644 "$tmp" "$CONF"
    CONF_CHANGED=1
    log "wrote $CONF (node $host: CPUs=$cpus RealMemory=${mem}MB, partition $PARTITION)"
  fi
  rm -f "$tmp"
}

start() {
  require_tools
  local t0=$SECONDS
  start_munge
  write_conf
  if [ "$CONF_CHANGED" = 1 ] && { pid_alive "$CTLD_PID" || pid_alive "$SLURMD_PID"; }; then
    log "slurm.conf changed: restarting slurmctld and slurmd"
    stop_pidfile slurmd "$SLURMD_PID"
    stop_pidfile slurmctld "$CTLD_PID"
  fi
  if pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" && node_usable; then
    log "already up: $(sinfo -h -N -o '%N %P %T %c CPUs %m MB' 2>/dev/null)"
    return 0
  fi
  if ! pid_alive "$CTLD_PID"; then
    log "starting slurmctld"
    slurmctld || { print_logs; die "slurmctld failed to start"; }
  fi
  if ! pid_alive "$SLURMD_PID"; then
    log "starting slurmd"
    slurmd || { print_logs; die "slurmd failed to start"; }
  fi
  local st="" deadline=$((SECONDS + WAIT_S))
  while [ $SECONDS -lt "$deadline" ]; do
    st="$(node_state)"
    case "$st" in
      idle|mixed|allocated|completing)
        log "up in $((SECONDS - t0)) s: $(sinfo -h -N -o '%N %P %T %c CPUs %m MB' 2>/dev/null)"
        return 0 ;;
      down*|drain*|fail*)
        # a node left down by an earlier run: bring it back
        scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  log "node not idle after ${WAIT_S}s (state: '${st:-no answer from slurmctld}')"
  pid_alive "$CTLD_PID" || log "slurmctld is not running"
  pid_alive "$SLURMD_PID" || log "slurmd is not running"
  print_logs
  exit 1
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE
  local pid i
  pid_alive "$2" || { rm -f "$2"; return 0; }
  pid="$(cat "$2")"
  log "stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$2"; return 0; }
    sleep 0.2
  done
  log "$1 did not exit on SIGTERM; sending SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$2"
}

stop() {
  stop_pidfile slurmd "$SLURMD_PID"
  stop_pidfile slurmctld "$CTLD_PID"
  stop_pidfile munged "$MUNGE_PID"
}

status() {
  local rc=0 d
  for d in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
    if pid_alive "${d#*:}"; then echo "${d%%:*}: running (pid $(cat "${d#*:}"))"; else echo "${d%%:*}: not running"; rc=1; fi
  done
  if command -v sinfo >/dev/null 2>&1 && timeout 10 sinfo -N -o '%N %P %T %c %m' 2>/dev/null; then
    node_usable || rc=1
  else
    echo "sinfo: no answer from slurmctld"; rc=1
  fi
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
