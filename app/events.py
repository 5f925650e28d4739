"""Event handlers whose inputs and outputs are addressed by name, and the error guard they wear.

    @handler(inputs={"name": name_box, "model": model_form}, outputs={"status": status_md, "plot": plot},
             status="status")
    def on_build(name: str, model: tuple):
        ...
        return {"status": "built", "plot": fig}        # outputs left out stay as they are

    on_build.listen(build_btn.click, api_name="model_build")

The handler receives one keyword argument per input name (a :class:`~app.forms.Form` input gives the
tuple of its widgets' values) and returns a dict of output name -> value (a Form output takes the list
:meth:`Form.updates` makes). The order of components exists only inside this module. An exception in
the handler becomes a one-line message in the ``status`` output (and a toast when ``warn``); the app
keeps serving. API callers (``gradio_client``) pass inputs by the same names, or a Form's fields as
``section__field``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping

import gradio as gr

from .context import user_message
from .forms import with_label

ERROR_PREFIX = "**Error:** "


def _is_form(x: Any) -> bool:
    return hasattr(x, "inputs") and hasattr(x, "param_names") and not isinstance(x, gr.components.Component)


class Handler:
    """A function wired to named inputs and outputs; see the module docstring."""

    def __init__(self, func: Callable[..., dict | None], inputs: Mapping[str, Any] | None = None,
                 outputs: Mapping[str, Any] | None = None, status: str | None = None, warn: bool = True,
                 request: bool = False):
        self.func = func
        self.request = request  # pass the page's gr.Request as ``request=`` (its address, its session)
        self.input_map = dict(inputs or {})
        self.output_map = dict(outputs or {})
        if status is not None and status not in self.output_map:
            raise ValueError(f"status output {status!r} is not one of the outputs: {', '.join(self.output_map)}")
        self.status = status
        self.warn = warn
        # (name, number of components or None for a single component) in the order gradio sees them
        self._in_slots = [(k, len(v.inputs) if _is_form(v) else None) for k, v in self.input_map.items()]
        self._out_slots = [(k, len(v.inputs) if _is_form(v) else None) for k, v in self.output_map.items()]
        self.inputs: list = [c for v in self.input_map.values() for c in (v.inputs if _is_form(v) else [v])]
        self.outputs: list = [c for v in self.output_map.values() for c in (v.inputs if _is_form(v) else [v])]
        api_names = [n for k, v in self.input_map.items() for n in (v.param_names if _is_form(v) else [k])]
        self.fn = self._gradio_fn(api_names)

    # -- what gradio calls ----------------------------------------------------------------------
    def _gradio_fn(self, api_names: list[str]) -> Callable:
        @functools.wraps(self.func)
        def fn(*values: Any, request: gr.Request | None = None) -> Any:
            kwargs = self.unpack(values)
            if self.request:
                kwargs["request"] = request
            return self.pack(self.run(**kwargs))

        # gradio names the API parameters after the function's; all optional (a widget's value is the default)
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in api_names]
        annotations: dict[str, Any] = {}
        if self.request:  # gradio fills a parameter annotated gr.Request itself; it is not an input
            params.append(inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=gr.Request))
            annotations["request"] = gr.Request
        fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        fn.__annotations__ = annotations
        return fn

    def unpack(self, values: tuple) -> dict[str, Any]:
        out, i = {}, 0
        for name, n in self._in_slots:
            if n is None:
                out[name], i = values[i], i + 1
            else:
                out[name], i = tuple(values[i:i + n]), i + n
        return out

    def pack(self, result: Mapping[str, Any] | None) -> Any:
        result = dict(result or {})
        unknown = set(result) - set(self.output_map)
        if unknown:
            raise KeyError(f"{self.func.__name__} returned outputs it does not have: {', '.join(sorted(unknown))}")
        flat: list[Any] = []
        for name, n in self._out_slots:
            if n is None:
                flat.append(result.get(name, gr.skip()))
            else:
                flat.extend(result.get(name) or [gr.skip()] * n)
        return tuple(flat) if len(flat) != 1 else flat[0]

    def run(self, **kwargs: Any) -> dict:
        """The handler's outputs by name; an exception becomes the status message."""
        try:
            return self.func(**kwargs) or {}
        except Exception as e:  # noqa: BLE001 - the whole point: nothing escapes to the user raw
            msg = with_label(user_message(e))
            if self.warn:
                gr.Warning(msg)
            return {self.status: f"{ERROR_PREFIX}{msg}"} if self.status is not None else {}

    def __call__(self, **kwargs: Any) -> dict:
        return self.run(**kwargs)

    # -- wiring ---------------------------------------------------------------------------------
    def listen(self, *triggers: Callable, **kwargs: Any) -> Any:
        """Attach to event listeners (``btn.click``, ``tab.select``, ``dep.then``); the last dependency."""
        dep = None
        for trigger in triggers:
            dep = trigger(self.fn, self.inputs, self.outputs, **kwargs)
        return dep


def handler(inputs: Mapping[str, Any] | None = None, outputs: Mapping[str, Any] | None = None,
            status: str | None = None, warn: bool = True, request: bool = False) -> Callable[[Callable], Handler]:
    """Decorator: ``func`` as a :class:`Handler` over named ``inputs`` and ``outputs`` (``request``: it also
    gets the page's ``gr.Request`` as ``request=``)."""

    def deco(func: Callable) -> Handler:
        return Handler(func, inputs, outputs, status=status, warn=warn, request=request)

    return deco


# The cheap read-only endpoints a page's timers call skip the queue: the browser posts each tick straight to
# the server (one HTTP request, no event stream), and a slow action in the queue (a model build, a forward pass)
# never holds a poll up. Their handlers only read files that changed, so many watchers are served at once.
POLL = dict(queue=False, show_progress="hidden")


__all__ = ["ERROR_PREFIX", "Handler", "POLL", "handler"]
