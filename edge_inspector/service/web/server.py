"""The commissioning page's server (Starlette on uvicorn, on a thread of its own inside `run`).

The inspection loop only hands over references (observe): the latest frame and its inspection, a
verdict summary, a replay entry. Everything drawn or encoded (MJPEG, snapshots, overlays at other
thresholds, setup aids) is done by the server, and only while someone asks for it.
docs/commissioning.md says what each endpoint does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from pathlib import Path

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge_inspector.calibration.store import current, station_folder
from edge_inspector.errors import UserError
from edge_inspector.service.commands import printable
from edge_inspector.service.web import render
from edge_inspector.service.web.auth import TokenGate, login
from edge_inspector.service.web.tuning import Replay, Seen, held_out, rates

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
RECENT = 50  # verdicts a new viewer of the stream gets first


def summary(message: dict) -> dict:
    keys = ("seq", "verdict", "score", "threshold", "part_id", "regions", "captured_at", "error")
    return {**{k: message.get(k) for k in keys}, "source": (message.get("frame") or {}).get("source"),
            "latency_ms": (message.get("latency_ms") or {}).get("total")}


def sse(event: str, data) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


class WebServer:
    def __init__(self, service, cfg):
        self.service, self.cfg = service, cfg
        self.replay = Replay(cfg.replay_frames)
        self.latest = None  # (image, inspection, decision): the pipeline's own objects
        self.latest_id = 0
        self.recent: deque[dict] = deque(maxlen=RECENT)
        self.clients: set[asyncio.Queue] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.viewers = 0
        app = Starlette(routes=[
            Route("/", lambda r: FileResponse(STATIC / "index.html")),
            Route("/login", login),
            Route("/live.mjpg", self.live),
            Route("/latest.jpg", self.snapshot),
            Route("/events", self.events),
            Route("/api/status", self.status),
            Route("/api/aids", self.aids),
            Route("/api/tuning", self.tuning),
            Route("/api/replay/{seq:int}.jpg", self.replay_image),
            Route("/api/apply", self.apply, methods=["POST"]),
            Route("/api/rollback", self.rollback, methods=["POST"]),
            Route("/metrics", self.metrics),
            Mount("/static", StaticFiles(directory=STATIC)),
        ], lifespan=self._lifespan)
        self.app = TokenGate(app, cfg.token())
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=cfg.host, port=cfg.port, log_level="warning",
                                                    access_log=False, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self._serve, name="http", daemon=True)

    # --- the service's side (the inference thread): references and a queue hand-off, no work ---
    def observe(self, image, inspection, decision, message: dict) -> None:
        item = summary(message)
        self.recent.append(item)
        if image is not None:
            self.latest = (image, inspection, decision)
            self.latest_id += 1
            if inspection is not None:
                self.replay.add(Seen(message["seq"], item["source"], message.get("part_id"), image, inspection,
                                     float(message["score"]), message["verdict"]))
        if self.clients and self.loop is not None:
            self.loop.call_soon_threadsafe(self._broadcast, item)

    def _broadcast(self, item: dict) -> None:
        for q in list(self.clients):
            if q.full():  # a slow viewer loses its oldest, never holds anyone up
                q.get_nowait()
            q.put_nowait(item)

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.server.run()
        except SystemExit:  # uvicorn exits when it cannot bind: said in one line, the line keeps running
            log.error("commissioning page: cannot listen on %s:%d", self.cfg.host, self.cfg.port)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        self.loop = asyncio.get_running_loop()
        log.info("commissioning page on http://%s:%d/", self.cfg.host, self.cfg.port)
        yield

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    # --- live view ---
    def _render_latest(self, pixel_threshold: float | None = None) -> bytes:
        image, inspection, decision = self.latest
        level = self.service.pixel_threshold if pixel_threshold is None else pixel_threshold
        regions = decision.regions if decision is not None else []
        return render.jpeg(render.overlay(image, inspection, regions, level, self.service.cfg.inspection,
                                          self.service.pixel_extent))

    async def live(self, request: Request) -> Response:
        async def frames():
            self.viewers += 1
            last = -1
            try:
                while not self.server.should_exit:
                    if self.latest is not None and self.latest_id != last:
                        last = self.latest_id
                        data = await run_in_threadpool(self._render_latest)
                        yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode() \
                            + b"\r\n\r\n" + data + b"\r\n"
                    await asyncio.sleep(1 / self.cfg.live_fps)
            finally:
                self.viewers -= 1
        return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"})

    async def snapshot(self, request: Request) -> Response:
        if self.latest is None:
            return Response("no frame inspected yet", status_code=404)
        return Response(await run_in_threadpool(self._render_latest), media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    async def aids(self, request: Request) -> Response:
        if self.latest is None:
            return JSONResponse({"error": "no frame inspected yet"}, status_code=404)
        return JSONResponse(await run_in_threadpool(render.setup_aids, self.latest[0]))

    async def metrics(self, request: Request) -> Response:
        """Prometheus, the same as on service.metrics_port (which stays an option)."""
        data = await run_in_threadpool(generate_latest, self.service.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    # --- verdicts and status ---
    def _status(self) -> dict:
        return {**self.service.live_status(), "viewers": self.viewers}

    async def status(self, request: Request) -> Response:
        return Response(json.dumps(await run_in_threadpool(self._status), default=str), media_type="application/json")

    async def events(self, request: Request) -> Response:
        q: asyncio.Queue = asyncio.Queue(maxsize=100)

        async def stream():
            self.clients.add(q)
            try:
                for item in list(self.recent):
                    yield sse("verdict", item)
                yield sse("status", await run_in_threadpool(self._status))
                while not self.server.should_exit:
                    try:
                        yield sse("verdict", await asyncio.wait_for(q.get(), 2.0))
                    except asyncio.TimeoutError:
                        yield sse("status", await run_in_threadpool(self._status))
            finally:
                self.clients.discard(q)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # --- threshold tuning ---
    def _levels(self, request: Request) -> tuple[float, float]:
        try:
            t = float(request.query_params.get("threshold", self.service.threshold))
            p = float(request.query_params.get("pixel_threshold", self.service.pixel_threshold))
        except ValueError:
            raise UserError("threshold and pixel_threshold must be numbers") from None
        return t, p

    async def tuning(self, request: Request) -> Response:
        try:
            t, p = self._levels(request)
        except UserError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if request.query_params.get("refresh") or not self.replay.frozen:
            self.replay.freeze()
        items = await run_in_threadpool(self.replay.judge, t, p, self.service.cfg.threshold.min_defect_area,
                                         self.service.pixel_extent)
        scores = held_out(current(station_folder(self.service.cfg)))
        return JSONResponse({"threshold": self.service.threshold, "pixel_threshold": self.service.pixel_threshold,
                             "proposed": {"threshold": t, "pixel_threshold": p}, "items": items,
                             "held_out": rates(scores, t, p, self.service.cfg.threshold.min_defect_area),
                             "held_out_scores": scores})

    async def replay_image(self, request: Request) -> Response:
        seen = self.replay.get(request.path_params["seq"])
        if seen is None:
            return Response("not among the replayed frames", status_code=404)
        try:
            t, p = self._levels(request)
        except UserError as exc:
            return Response(str(exc), status_code=400)

        def draw() -> bytes:
            extent = self.service.pixel_extent
            decision = render.regions_at(seen.result, seen.score, t, p, self.service.cfg.threshold.min_defect_area,
                                         extent)
            return render.jpeg(render.overlay(seen.image, seen.result, decision.regions, p,
                                              self.service.cfg.inspection, extent))
        return Response(await run_in_threadpool(draw), media_type="image/jpeg")

    async def apply(self, request: Request) -> Response:
        return await self._change(request, "applies the change", "{threshold, pixel_threshold, who}",
                                  lambda b: (float(b["threshold"]), float(b["pixel_threshold"])), self.service.retune)

    async def rollback(self, request: Request) -> Response:
        return await self._change(request, "rolls back", "{who}", lambda b: (), self.service.rollback_calibration)

    async def _change(self, request: Request, what: str, expected: str, parse, act) -> Response:
        """A calibration change: its JSON body read by parse, who makes it required, act(*args, who,
        client address) run off the event loop; the new version, or why not, as JSON."""
        try:
            body = await request.json()
            args = parse(body)
            who = printable(str(body.get("who") or "").strip(), 64)
            if not who:
                raise UserError(f"say who {what} (the 'who' field)")
            version = await run_in_threadpool(act, *args, who, request.client.host)
        except UserError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        except (ValueError, KeyError, TypeError, AttributeError):  # not JSON, not an object, a field missing
            return JSONResponse({"ok": False, "error": f"expected JSON {expected}"}, status_code=400)
        return JSONResponse({"ok": True, "version": version})
