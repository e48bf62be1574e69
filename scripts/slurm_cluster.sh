#!/usr/bin/env bash
# A real one-node SLURM cluster (Debian slurm-wlm + munge) in a private folder, for tests and CI.
#
#   scripts/slurm_cluster.sh start DIR [NODES]  # writes DIR/slurm.conf, starts munged, slurmctld and
#                                               # one slurmd per node (default 2 nodes, n1..nN, all on
#                                               # this host with their own ports, sharing its CPUs and
#                                               # memory); prints SLURM_CONF=... once every node is idle
#   scripts/slurm_cluster.sh stop DIR           # stops the daemons (by their pid files)
#
# Clients (sbatch, squeue, scontrol, scancel) find the cluster through SLURM_CONF=DIR/slurm.conf.
# Kept small on purpose: no cgroups (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none)
# and no accounting database (AccountingStorageType=accounting_storage/none), so sacct has
# nothing to report; the SLURM platform then reads squeue + scontrol show job. Needs root (the
# daemons run as the calling user) and the packages: apt-get install -y slurm-wlm munge.
# Exit status non-zero with the reason on stderr when the cluster cannot start.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
nodes=${3:-2}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi

stop_pid() {
  local f=$1
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if [ "$cmd" = stop ]; then
  for f in "$dir"/slurmd-*.pid; do stop_pid "$f"; done
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/munged.pid"
  exit 0
fi
[ "$cmd" = start ] || { echo "unknown command $cmd (use start or stop)" >&2; exit 2; }

for tool in munged mungekey slurmctld slurmd sbatch squeue scontrol scancel sinfo; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "slurm_cluster: $tool is not installed. Fix: apt-get install -y slurm-wlm munge" >&2
    exit 1
  fi
done

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 0700 "$dir"
mkdir -p "$dir/spool/ctld" "$dir/log" "$dir/munge"
chmod 0700 "$dir/munge"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
host=$(hostname -s)
cpus=$(( $(nproc) / nodes )); [ "$cpus" -ge 1 ] || cpus=1
mem_mb=$(awk -v n="$nodes" '/MemTotal/ {print int($2/1024*0.8/n)}' /proc/meminfo)
user=$(id -un)
ctld_port=$(free_port)
sock="$dir/munge/munge.socket"

mungekey --create --keyfile="$dir/munge/munge.key" --force >/dev/null 2>&1 ||
  { dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null; }
chmod 0600 "$dir/munge/munge.key"
munged --force --socket="$sock" --key-file="$dir/munge/munge.key" --pid-file="$dir/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" ||
  { echo "slurm_cluster: munged did not start: $(tail -3 "$dir/log/munged.log" 2>/dev/null)" >&2; exit 1; }

cat > "$dir/slurm.conf" <<CONF
ClusterName=taoskills
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
JobRequeue=1
CONF
names=""
for i in $(seq "$nodes"); do
  echo "NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$(free_port) CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN" >> "$dir/slurm.conf"
  names="$names${names:+,}n$i"
done
echo "PartitionName=debug Nodes=$names Default=YES MaxTime=INFINITE State=UP" >> "$dir/slurm.conf"
export SLURM_CONF="$dir/slurm.conf"

slurmctld -c -f "$SLURM_CONF" ||
  { echo "slurm_cluster: slurmctld did not start: $(tail -5 "$dir/log/slurmctld.log" 2>/dev/null)" >&2; exit 1; }
for i in $(seq "$nodes"); do
  slurmd -c -N "n$i" -f "$SLURM_CONF" ||
    { echo "slurm_cluster: slurmd n$i did not start: $(tail -5 "$dir/log/slurmd-n$i.log" 2>/dev/null)" >&2; exit 1; }
done

for _ in $(seq 120); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | sort -u | tr '\n' ' ' || true)
  if [ "$(sinfo -h -N -t idle -o '%N' 2>/dev/null | wc -l)" -eq "$nodes" ]; then
    echo "SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "slurm_cluster: the node did not become idle (state: ${state:-none}); slurmctld log: $(tail -5 "$dir/log/slurmctld.log" 2>/dev/null) slurmd log: $(tail -5 "$dir/log/slurmd-n1.log" 2>/dev/null)" >&2
exit 1
