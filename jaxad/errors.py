"""Errors that jaxad reports to users as one clear message (no deep traceback)."""


class JaxadError(Exception):
  """Base class for problems caused by user input (files, paths, options)."""


class DataError(JaxadError):
  """A dataset file or folder is missing, unreadable or malformed; the message names it."""


class WeightsError(JaxadError):
  """A weights file is missing, corrupt, unsafe, or does not match the model."""


class ConfigError(JaxadError):
  """A configuration value or override is invalid."""
