"""The demo's MCP server and API on the tiny profile: a real MCP client (the `mcp` package over the app's
streamable-HTTP endpoint on loopback) lists the tools and calls sound -> image and caption -> images; the
API has exactly the documented endpoint names. (Every endpoint's gradio_client call: tests/test_demo.py.)"""
from __future__ import annotations

import asyncio
import base64
import io
import re
from pathlib import Path

import httpx
import pytest
from demo_server import tiny_demo
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GALLERY = "Default photos (scikit-image)"
TOOLS = {"audio_to_image", "caption_to_images", "sound_to_images", "image_to_captions"}
URL = re.compile(r"'url': '(http://[^']+)'")


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory):
    with tiny_demo(tmp_path_factory.getbasetemp(), live_bridge=False, mcp=True) as (demo, url, _):
        assert demo.mcp_error is None, demo.mcp_error
        yield url + "gradio_api/mcp/"


def mcp(url: str, work):
    """Run ``await work(session)`` in a fresh MCP client session against ``url``; its result."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main():
        async with streamable_http_client(url) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(asyncio.wait_for(main(), timeout=300))


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def images_in(result) -> list[Image.Image]:
    """The images a tool result links to, fetched from the app."""
    out = []
    for link in URL.findall(text_of(result)):
        r = httpx.get(link, timeout=30)
        r.raise_for_status()
        out.append(Image.open(io.BytesIO(r.content)))
    return out


def test_tools_are_the_handlers_with_documented_parameters(mcp_url):
    async def work(session):
        return (await session.list_tools()).tools

    tools = {t.name: t for t in mcp(mcp_url, work)}
    assert set(tools) == TOOLS  # no auto-named endpoints, no private Enter-submit duplicates
    a2i = tools["audio_to_image"]
    assert a2i.description.startswith("Generate an image from a sound")
    assert set(a2i.inputSchema["properties"]) == {"audio", "route", "steer_text", "steer_weight", "seed", "steps",
                                                   "guidance", "size"}
    assert a2i.inputSchema["properties"]["size"]["type"] == "integer"  # not Gradio's "string" for a Dropdown
    for t in tools.values():
        assert all(p.get("description") for p in t.inputSchema["properties"].values()), t.name


def test_mcp_sound_to_image(mcp_url):
    wav = base64.b64encode((ROOT / "demo" / "examples" / "bell.wav").read_bytes()).decode()

    async def work(session):
        return await session.call_tool("audio_to_image", {
            "audio": f"data:audio/wav;base64,{wav}", "route": "captions", "steer_text": "", "steer_weight": 0.3,
            "seed": 0, "steps": 2, "guidance": 1.0, "size": 64})

    result = mcp(mcp_url, work)
    assert not result.isError, text_of(result)
    images = images_in(result)
    assert len(images) == 1 and images[0].size == (64, 64)
    assert "caption-bank baseline" in text_of(result)


def test_mcp_caption_to_images_and_a_plain_error(mcp_url):
    async def work(session):
        args = {"caption": "a cat with green eyes", "gallery_name": GALLERY, "scorer": "reference", "top_k": 3}
        return (await session.call_tool("caption_to_images", args),
                await session.call_tool("caption_to_images", {**args, "caption": "  "}))

    good, bad = mcp(mcp_url, work)
    assert not good.isError, text_of(good)
    assert len(images_in(good)) == 3 and "1. " in text_of(good)
    assert bad.isError and "the caption is empty" in text_of(bad)


def test_api_has_exactly_the_documented_endpoints(tmp_path, monkeypatch):
    """Named endpoints, the live bridge's status included; none auto-generated (e.g. ``/bridge_status_1``)."""
    from demo.app import build_demo
    from demo.models import Settings

    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    demo = build_demo(settings=Settings.from_env(env={}, profile="tiny", tiny_root=str(tmp_path / "tiny")))
    api = demo.get_api_info()
    assert set(api["named_endpoints"]) == {f"/{n}" for n in TOOLS | {"bridge_status", "sound_adapter_status"}}
    assert not api["unnamed_endpoints"]
    params = [p["parameter_name"] for p in api["named_endpoints"]["/audio_to_image"]["parameters"]]
    assert params == ["audio", "route", "steer_text", "steer_weight", "seed", "steps", "guidance", "size"]


def test_the_documented_gradio_client_examples_run(mcp_url, monkeypatch):
    """Each ``gradio_client`` example in docs/space.md's API section, run against the tiny app (its URL, a
    shipped photo for "photo.jpg", the tiny profile's 64 px for 512)."""
    from fusemix.default_gallery import default_gallery_dir

    api = (ROOT / "docs" / "space.md").read_text(encoding="utf-8").split("## API (gradio_client)", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", api.split("\n## ", 1)[0], re.S)
    assert len(blocks) == 6
    monkeypatch.chdir(ROOT)
    ran = set()
    for code in blocks:
        name = re.search(r'api_name="/(\w+)"', code).group(1)
        if name.endswith("_status"):  # this module's app trains nothing (tests/test_demo.py calls them)
            continue
        code = (code.replace('"http://127.0.0.1:7860/"', repr(mcp_url.split("gradio_api")[0]))
                .replace('"photo.jpg"', repr(str(default_gallery_dir() / "chelsea.png"))).replace(" 512,", " 64,"))
        exec(compile(code, f"docs/space.md:{name}", "exec"), {"print": lambda *a: ran.add(name)})
    assert ran == TOOLS
