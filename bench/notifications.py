"""What notifications add to the lifecycle and the sampler, against what those already do at the
same moments, measured in the same run.

  - per lifecycle event: instance_event.send() (the receiver: coalescing look-up, one INSERT, one
    Huey enqueue) against what the lifecycle already does at every crash/exit: Instance.set_status()
    (UPDATE + websocket publish) and the nginx regeneration enqueue (_update_proxy), wall time, on a
    throwaway stack whose worker runs the jobs;
  - per sample: the threshold check (monitoring.signals.sample_taken receiver, nothing crossing)
    against Sampler.sample() itself, CPU time of this thread.

Target: the receiver costs about as much as what the lifecycle already does at that moment (same
order, a few ms on SQLite; a crash restart then waits >= 1 s of backoff anyway); the per-sample
check is < 1 % of a sample.

    .venv/bin/python bench/notifications.py [--events 200] [--samples 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _stack import percentile, running_stack, write_blueprint


def timed(fn, count: int, clock=time.perf_counter) -> list[float]:
    fn(0)
    costs = []
    for i in range(count):
        t0 = clock()
        fn(i)
        costs.append(clock() - t0)
    return costs


def line(name: str, costs: list[float], unit: float, label: str) -> float:
    median = statistics.median(costs)
    print(f"  {name:<44} median {median * unit:8.3f} {label}   p95 {percentile(costs, 95) * unit:8.3f} {label}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()

    with running_stack():
        from django.conf import settings

        from instances.models import Instance, InstanceStatus
        from instances.signals import instance_event
        from monitoring.sampler import Sampler
        from notifications import receivers
        from notifications.models import Event
        from proxy.tasks import regenerate_nginx

        write_blueprint("bench-idle", "# aikore.ready: none\nexec sleep 1000\n")
        instance = Instance.objects.create_instance(name="Bench Notify", blueprint="bench-idle")

        def status_write(i: int) -> None:
            instance.set_status(InstanceStatus.STARTING, error_message=f"Exited with code 3; attempt {i}")

        def exit_baseline(i: int) -> None:
            status_write(i)
            regenerate_nginx()

        def notify(i: int) -> None:
            instance_event.send(sender=Instance, instance=instance, kind="crashed", exit_code=3,
                                attempt=i % 5 + 1, limit=5, delay=1.0)

        print(f"per lifecycle event ({args.events} each, wall time):")
        line("Instance.set_status() alone", timed(status_write, args.events), 1e3, "ms")
        base = line("baseline: set_status() + nginx job enqueue", timed(exit_baseline, args.events), 1e3, "ms")
        cost = line("instance_event.send() (record + enqueue)", timed(notify, args.events), 1e3, "ms")
        print(f"  ratio: {cost / base:.2f}x what the lifecycle already does at a crash/exit; events recorded: "
              f"{Event.objects.filter(instance=instance).count()}")

        sampler = Sampler(interval=1.0, history_seconds=60, disk_path=settings.AIKORE_DATA_DIR)
        sample = sampler.sample()
        print(f"per sample ({args.samples} each, CPU time of this thread):")
        base = line("baseline: Sampler.sample()", timed(lambda i: sampler.sample(), args.samples, time.thread_time),
                    1e6, "µs")
        cost = line("threshold check (sample_taken receiver)",
                    timed(lambda i: receivers.on_sample(Sampler, sample=sample), args.samples, time.thread_time),
                    1e6, "µs")
        print(f"  ratio: {100 * cost / base:.2f} % of a sample")


if __name__ == "__main__":
    main()
