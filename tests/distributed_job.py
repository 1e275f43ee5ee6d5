"""A test job of `tfn train` ranks with hooks that the library does not have (used by test_distributed.py).

    python tests/distributed_job.py NPROC TRAIN_ARGS...   launches NPROC ranks of this script
    (as a rank)                                            runs `tfn train TRAIN_ARGS...`

Environment of the ranks:
    TFN_TEST_DUMP=DIR        each rank writes its variables after training to DIR/rank<R>.safetensors
    TFN_TEST_FAIL_STEP=K     rank 1 raises an error in training step K
"""

from __future__ import annotations

import os
import sys

from tfn.runners import distributed


def rank_main(args: list[str]) -> None:
    from safetensors.torch import save_file

    import tfn.runners.train as train_module
    from tfn.cli.main import main

    dump, fail_step = os.environ.get("TFN_TEST_DUMP"), int(os.environ.get("TFN_TEST_FAIL_STEP", 0))
    original_run = train_module.Trainer.run

    def run(self, total_steps, metrics_file):
        if fail_step and self.replicas.rank == 1:
            step = self.precision.step

            def failing_step(optimizer):
                if self.position.step >= fail_step:
                    raise RuntimeError(f"injected failure in rank 1 at step {self.position.step}")
                step(optimizer)

            self.precision.step = failing_step
        stopped = original_run(self, total_steps, metrics_file)
        if dump:
            variables = {name: t.detach().cpu().contiguous() for name, t in self.model.variables().items()}
            save_file(variables, os.path.join(dump, f"rank{self.replicas.rank}.safetensors"))
        return stopped

    train_module.Trainer.run = run
    main(["train", *args])


if __name__ == "__main__":
    if distributed.launched():
        rank_main(sys.argv[1:])
    else:
        try:
            distributed.launch(int(sys.argv[1]), [sys.executable, os.path.abspath(__file__), *sys.argv[2:]])
        except distributed.LaunchFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_status)
