#!/usr/bin/env bash
# aikore.name: Test logs
# aikore.category: Testing
# aikore.kind: test
# aikore.description: Prints numbered lines on stdout and stderr (interleaved), ANSI colours and a carriage-return progress bar; never opens a port.
# aikore.ready: none
#
# Odd lines go to stdout ("line N stdout"), even lines to stderr ("line N stderr"), one every
# $TEST_LOGS_INTERVAL seconds (default 0.2). Every 10 lines: an ANSI-coloured line and a tqdm-like
# progress bar redrawn with "\r". Runs forever, or stops with status 0 after $TEST_LOGS_COUNT lines.
set -euo pipefail

interval="${TEST_LOGS_INTERVAL:-0.2}"
if [[ ! "$interval" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    echo "TEST_LOGS_INTERVAL='$interval' is not a number; using 0.2" >&2
    interval=0.2
fi
count="${TEST_LOGS_COUNT:-}"
if [[ -n "$count" && ! "$count" =~ ^[0-9]+$ ]]; then
    echo "TEST_LOGS_COUNT='$count' is not a whole number; running forever" >&2
    count=""
fi

colours=(31 32 33 34 35 36)

coloured_line() {
    local n="$1"
    local colour="${colours[$(( (n / 10) % ${#colours[@]} ))]}"
    printf '\033[1;%sm== colour check after line %s ==\033[0m \033[2mdim\033[0m \033[4munderline\033[0m\n' "$colour" "$n"
}

# A tqdm-style bar on stderr: redraws of the same line with "\r" (written separately, a little
# apart, as a live log viewer receives them), then a newline.
progress_bar() {
    local step bar
    for step in $(seq 0 10); do
        printf -v bar '%*s' "$step" ''
        printf '\rprogress: %3d%%|%-10s| %d/10' $(( step * 10 )) "${bar// /#}" "$step" >&2
        if [[ "$interval" != 0 && "$step" -lt 10 ]]; then
            sleep 0.02
        fi
    done
    printf '\n' >&2
}

n=0
while [[ -z "$count" ]] || (( n < count )); do
    n=$(( n + 1 ))
    if (( n % 2 )); then
        echo "line $n stdout"
    else
        echo "line $n stderr" >&2
    fi
    if (( n % 10 == 0 )); then
        coloured_line "$n"
        progress_bar
    fi
    sleep "$interval"
done
exit 0
