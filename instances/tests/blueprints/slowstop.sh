#!/usr/bin/env bash
# aikore.name: Slow stop (test)
# aikore.category: Testing
# aikore.description: On SIGTERM writes "TERM at <epoch seconds>" to its log, takes 1 s more, then exits.
# aikore.ready: none
trap 'echo "TERM at $(date +%s.%N)"; sleep 1; exit 0' TERM
echo "waiting for TERM"
sleep 100000 &
wait
