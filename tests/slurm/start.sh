#!/usr/bin/env bash
# A one-node Slurm cluster on localhost for the tests (and for trying launcher settings by hand).
#
#   tests/slurm/start.sh [start] [DIR]   install slurm-wlm + munge if missing (root, apt), write
#                                        DIR/slurm.conf, start munged, slurmctld, slurmd, wait for an
#                                        idle node; prints SLURM_CONF=DIR/slurm.conf as its last line
#   tests/slurm/start.sh stop DIR        cancel the cluster's jobs, stop its daemons
#
# DIR (default: a new /tmp/ctrlic-slurm.XXXXXX) holds the config, the munge key, sockets, state and
# logs; the cluster writes nothing to /etc or to the repository. Ports are free ones picked at start,
# so two clusters (two test sessions) do not meet. Without systemd and cgroups: the daemons are
# started directly, processes are tracked through /proc (proctrack/linuxproc), no task binding
# (task/none), no accounting (sacct does not answer; submitit then watches its result files).
# Exit codes: 0 running / stopped; 3 cannot run here (the line "SKIP: <reason>" says why); 1 failed.
set -euo pipefail

ACTION=start
if [[ ${1:-} == start || ${1:-} == stop ]]; then ACTION=$1; shift; fi
DIR=${1:-}
PACKAGES=(slurm-wlm munge)
WAIT_S=${CTRLIC_SLURM_WAIT_S:-60}

skip() { echo "SKIP: $*"; exit 3; }
fail() {  # say why with the daemons' logs, stop what did start
    echo "FAILED: $*" >&2
    for log in "$DIR"/*.log; do [[ -f $log ]] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }; done
    stop >/dev/null 2>&1 || true
    exit 1
}

pid_of() { [[ -s $DIR/$1.pid ]] && cat "$DIR/$1.pid"; }

stop_daemons() {  # SIGTERM the daemons of DIR's pid files together, wait for them to go (KILL after 10 s)
    local name pid pids=()
    for name in "$@"; do
        pid=$(pid_of "$name") && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    done
    local alive
    for _ in $(seq 100); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

stop() {
    [[ -n $DIR && -f $DIR/slurm.conf ]] || { echo "no cluster in '${DIR}'" >&2; exit 1; }
    export SLURM_CONF=$DIR/slurm.conf
    if [[ -n $(pid_of slurmctld) ]] && kill -0 "$(pid_of slurmctld)" 2>/dev/null; then
        mapfile -t jobs < <(squeue --noheader --format=%A 2>/dev/null || true)
        if ((${#jobs[@]})); then  # submitit's jobs ignore SIGTERM: kill them, then cancel them
            scancel --full --signal=KILL "${jobs[@]}" 2>/dev/null || true
            scancel "${jobs[@]}" 2>/dev/null || true
            for _ in $(seq 150); do [[ -z $(squeue --noheader 2>/dev/null) ]] && break; sleep 0.2; done
        fi
    fi
    stop_daemons slurmd slurmctld munged
    echo "stopped the cluster in $DIR"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || skip "${missing[*]} not installed and no apt-get (not Debian/Ubuntu)"
    echo "installing ${missing[*]} with apt-get"
    local tries
    for tries in 1 2 3; do  # apt's lock may be held by another process for a while
        if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 "${missing[@]}" \
                >"$DIR/apt.log" 2>&1; then
            return 0
        fi
        if grep -q "Unable to locate package\|has no installation candidate" "$DIR/apt.log"; then
            apt-get update -qq >/dev/null 2>&1 || true
        fi
        sleep $((tries * 5))
    done
    skip "apt-get install ${missing[*]} failed: $(tail -n 1 "$DIR/apt.log")"
}

write_config() {  # one node with this machine's CPUs and memory (slurmd -C), jobs run as root
    local host cpus mem ctld_port d_port
    host=$(hostname -s)
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n 1)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
    ctld_port=$(free_port)
    d_port=$(free_port)
    while [[ $d_port == "$ctld_port" ]]; do d_port=$(free_port); done
    cat >"$DIR/slurm.conf" <<EOF
ClusterName=ctrlic
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again this many seconds after it ended (default 120)
AuthInfo=socket=$DIR/munge.socket,cred_expire=10
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=60
KillWait=30
MinJobAge=300
MailProg=/bin/true
# look at pending jobs every 2 s, not every 60 s / 30 s
SchedulerParameters=sched_interval=2,bf_interval=2
JobRequeue=1
NodeName=ctrlic NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ctrlic Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [[ $(id -u) == 0 ]] || skip "not root: slurmd must run as root to start jobs"
    if [[ -z $DIR ]]; then DIR=$(mktemp -d /tmp/ctrlic-slurm.XXXXXX); fi
    mkdir -p "$DIR/ctld" "$DIR/spool"
    install_packages
    for tool in munged mungekey slurmctld slurmd sinfo sbatch; do
        command -v "$tool" >/dev/null || skip "$tool not found after installing ${PACKAGES[*]}"
    done
    chmod 755 "$DIR"  # munged: the socket's folder must be reachable by every user
    export SLURM_CONF=$DIR/slurm.conf
    write_config
    mungekey --create --keyfile="$DIR/munge.key" --force
    munged --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" --pid-file="$DIR/munged.pid" \
        --log-file="$DIR/munged.log" --seed-file="$DIR/munged.seed" || fail "munged did not start"
    slurmctld -i </dev/null >>"$DIR/slurmctld.log" 2>&1 || fail "slurmctld did not start"
    slurmd -N ctrlic </dev/null >>"$DIR/slurmd.log" 2>&1 || fail "slurmd did not start"
    local state=""
    for _ in $(seq $((WAIT_S * 5))); do
        state=$(sinfo --noheader --nodes=ctrlic --format=%t 2>/dev/null || true)
        [[ $state == idle ]] && break
        sleep 0.2
    done
    [[ $state == idle ]] || fail "node not idle after ${WAIT_S}s (state '$state')"
    sinfo --nodes=ctrlic --format="%P %D %c %m %t %N"
    echo "SLURM_CONF=$SLURM_CONF"
}

"$ACTION"
