"""Which share of a sweep this process trains, when several processes (hosts) run one sweep together.

Every process runs the same `jaxad sweep` command with one --workdir on a shared filesystem; process p
of P trains the chunks whose ordinal is p modulo P, on its own devices. The processes never talk to
each other: a chunk's report in the workdir says it is done, and the process that finds every chunk
done when it finishes writes the sweep tables (two that finish together write the same files, each
whole). A process that dies leaves its chunks unfinished; running the command again (anywhere) resumes
them from their checkpoints.

Why not `jax.distributed`: its processes form one multi-controller program, and orbax then saves each
checkpoint as a global one whose numpy arrays only process 0 writes: the checkpoints of the chunks the
other processes train came out empty (found with two CPU processes). A sweep's chunks are independent
programs, so nothing is gained from a global device view.
"""

from __future__ import annotations

import os

from jaxad.errors import ConfigError

# (process index, process count, launcher) variables of the launchers that start one process per task
LAUNCHERS = (("SLURM_PROCID", "SLURM_NTASKS", "SLURM"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "Open MPI"),
             ("PMI_RANK", "PMI_SIZE", "MPICH / Intel MPI"))


def from_environment(environ=os.environ) -> tuple[int, int, str] | None:
  """(process count, this process's index, launcher) from the first launcher whose variables are set."""
  for index_var, count_var, name in LAUNCHERS:
    if index_var in environ and count_var in environ:
      try:
        return int(environ[count_var]), int(environ[index_var]), name
      except ValueError:
        raise ConfigError(f"{name}'s {count_var}={environ[count_var]!r} and {index_var}={environ[index_var]!r} are "
                          "not process numbers") from None
  return None


def resolve(num_processes: int | None, process_id: int | None, from_launcher: bool, environ=os.environ
            ) -> tuple[int, int]:
  """(process count, this process's index): given (--num-processes, --process-id), or read from the launcher's
  environment (--distributed), or (1, 0)."""
  if (num_processes is None) != (process_id is None):
    raise ConfigError("give --num-processes and --process-id together")
  if num_processes is not None:
    count, index, source = num_processes, process_id, "--num-processes/--process-id"
  elif from_launcher:
    found = from_environment(environ)
    if found is None:
      names = ", ".join(f"{n} ({i}, {c})" for i, c, n in LAUNCHERS)
      raise ConfigError(f"--distributed found no launcher's variables ({names}); give --num-processes N and "
                        "--process-id I on every process")
    count, index, source = found
  else:
    return 1, 0
  if count < 1 or not 0 <= index < count:
    raise ConfigError(f"{source}: process {index} of {count} (the index must be in 0..count-1)")
  return count, index
