"""The run's mmengine Config, formatted once.

mmengine formats a config as Python text (``Config.pretty_text``, which runs yapf) each time it shows it: the
Runner logs it, writes it to the work dir, hands it to the visualiser (which writes it again), keeps it in the
message hub and stores it in every checkpoint's meta. Five yapf passes of the same text cost about 2.5 CPU s per
demo run (0.5 s each, measured 2026-12-07), a fifth of a 150-iteration run's fixed cost. :class:`FormattedConfig`
keeps the text of each config content it has formatted, so equal contents (the Runner works on deep copies) are
formatted once; the text itself is mmengine's, unchanged.
"""

from __future__ import annotations

from mmengine.config import Config


class FormattedConfig(Config):
    """A ``Config`` whose ``pretty_text`` is computed once per content (the key is the config's full repr, so a
    changed value is formatted again)."""

    _texts: dict[str, str] = {}

    @property
    def pretty_text(self) -> str:
        key = f"{self.filename!r} {self._cfg_dict!r}"
        text = FormattedConfig._texts.get(key)
        if text is None:
            text = FormattedConfig._texts[key] = super().pretty_text
        return text


def formatted_once(cfg: Config) -> FormattedConfig:
    """``cfg`` itself, as a :class:`FormattedConfig` (the same object: mmengine's ``fromfile`` builds a plain
    ``Config`` whatever class it is called on)."""
    object.__setattr__(cfg, "__class__", FormattedConfig)  # Config.__setattr__ would set a config key
    return cfg
