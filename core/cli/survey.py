"""Looking at a configuration's chain without running it (``check``, ``route``, ``serve``'s warnings).

The chain's plugins are built (their constructors see the options; a failing one is a
``ConfigError`` naming its chain entry, never a traceback), but no queue is opened, no
``startup`` runs and nothing is bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import LoadedConfig
    from ..plugin import PluginContext
    from ..runtime import Runtime


def built(config: LoadedConfig, context: PluginContext) -> Runtime:
    """The chain's plugin instances (``check``, ``route``, ``serve``'s warnings); a plugin whose constructor
    fails is a ``ConfigError`` naming its chain entry, never a traceback."""
    from ..errors import ConfigError
    from ..runtime import build_runtime

    try:
        return build_runtime(config, context)[0]
    except Exception as exc:
        for spec in config.chain:
            try:
                spec.cls(spec.options, context, instance_name=spec.name)
            except Exception as failed:  # noqa: BLE001 - any failure of a constructor is told the same way
                raise ConfigError(f"{config.source}: {spec.key_path}: the plugin cannot be set up: "
                                  f"{type(failed).__name__}: {failed}") from exc
        raise


async def examine(config: LoadedConfig) -> tuple[dict[str, list[str]], list[str], str]:
    """The chain's order per hook, the warnings (``configlint``) and where the queue is (not opened)."""
    from ..configlint import warnings
    from ..runtime import make_context, queue_backend

    context = make_context(config)
    runtime = built(config, context)
    backend = await queue_backend(config, context)
    found = await warnings(runtime)
    found += [f"{p.instance_name}: {text}" for p in runtime.plugins for text in p.config_warnings()]
    return runtime.chain.order(), found, backend.location
