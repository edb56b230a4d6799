"""Draw the demo catalog's product images (run once; the WebP files are committed).

    uv run python services/catalog/scripts/make_demo_images.py

Coffee bags in each product's colours with its name on the label, simple line drawings for the
brewing gear, and one close-up of beans per roast level. Deterministic: the same input draws the
same pixels.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEMO = Path(__file__).resolve().parents[1] / "src" / "catalog" / "demo"
OUT = DEMO / "images"
SIZE = 600
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in (FONT_DIR, Path("/usr/share/fonts/truetype")):
        if (folder / name).exists():
            return ImageFont.truetype(str(folder / name), size)
    return ImageFont.load_default(size=size)


def hex_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c * factor))) for c in rgb)  # type: ignore[return-value]


def background(color: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), color)
    draw = ImageDraw.Draw(image)
    for y in range(SIZE):
        draw.line([(0, y), (SIZE, y)], fill=shade(color, 1.04 - 0.1 * y / SIZE))
    return image


def floor_shadow(image: Image.Image, box: tuple[int, int, int, int]) -> None:
    layer = Image.new("L", image.size, 0)
    ImageDraw.Draw(layer).ellipse(box, fill=90)
    layer = layer.filter(ImageFilter.GaussianBlur(14))
    image.paste(Image.new("RGB", image.size, (40, 30, 25)), (0, 0), layer)


def wrap(
    text: str, typeface: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int
) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and typeface.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def flame(
    draw: ImageDraw.ImageDraw, cx: int, cy: int, size: int, color: tuple[int, int, int]
) -> None:
    points = []
    for i in range(60):
        t = 2 * math.pi * i / 60
        r = size * (1 - 0.55 * math.sin(t / 2) ** 8)
        x = cx + r * 0.55 * math.sin(t)
        y = cy - r * math.cos(t) * (1.25 if math.cos(t) > 0 else 0.7)
        points.append((x, y))
    draw.polygon(points, fill=color)


def coffee_bag(product: dict[str, object]) -> Image.Image:
    bg, bag, ink = (hex_rgb(c) for c in product["colors"])  # type: ignore[union-attr]
    image = background(bg)
    floor_shadow(image, (140, 500, 460, 560))
    draw = ImageDraw.Draw(image)
    body = [(178, 150), (422, 150), (448, 528), (152, 528)]
    draw.polygon(body, fill=bag)
    draw.polygon([(178, 150), (214, 150), (196, 528), (152, 528)], fill=shade(bag, 0.88))
    draw.polygon([(390, 150), (422, 150), (448, 528), (412, 528)], fill=shade(bag, 1.08))
    draw.rectangle((170, 112, 430, 158), fill=shade(bag, 0.8))
    for x in range(176, 428, 12):
        draw.line([(x, 116), (x + 6, 154)], fill=shade(bag, 0.7), width=2)
    label = (196, 232, 404, 468)
    draw.rounded_rectangle(label, radius=14, fill=(250, 246, 238))
    flame(draw, 300, 274, 22, ink)
    flame(draw, 300, 280, 11, shade(bag, 1.1))
    draw.text((300, 308), "EMBER", font=font(18, bold=True), fill=ink, anchor="mm")
    size = 25
    name_font = font(size, bold=True)
    lines = wrap(str(product["name"]), name_font, 188)
    while len(lines) > 2 and size > 18:
        size -= 2
        name_font = font(size, bold=True)
        lines = wrap(str(product["name"]), name_font, 188)
    step = size + 5
    top = 372 - step * (len(lines) - 1) / 2
    for i, line in enumerate(lines):
        draw.text((300, top + step * i), line, font=name_font, fill=(40, 32, 28), anchor="mm")
    roast = str(product.get("roast") or "").replace("-", " ")
    detail = (
        f"{roast} roast · {product['weight_grams']} g" if roast else f"{product['weight_grams']} g"
    )
    draw.text((300, 446), detail.upper(), font=font(13), fill=ink, anchor="mm")
    return image


def gear(product: dict[str, object]) -> Image.Image:
    bg, body, ink = (hex_rgb(c) for c in product["colors"])  # type: ignore[union-attr]
    image = background(bg)
    floor_shadow(image, (150, 480, 450, 550))
    draw = ImageDraw.Draw(image)
    slug = str(product["slug"])
    if "dripper" in slug:
        draw.polygon([(160, 170), (440, 170), (340, 400), (260, 400)], fill=body)
        draw.polygon([(160, 170), (200, 170), (280, 400), (260, 400)], fill=shade(body, 1.1))
        draw.rectangle((210, 400, 390, 428), fill=shade(body, 0.85))
        draw.ellipse((150, 155, 450, 190), fill=shade(body, 0.7))
        draw.arc((400, 210, 480, 310), 270, 90, fill=body, width=18)
        draw.rounded_rectangle((235, 428, 365, 510), radius=10, fill=ink)
    elif "grinder" in slug:
        draw.rounded_rectangle((230, 220, 370, 500), radius=22, fill=body)
        draw.rectangle((230, 300, 370, 316), fill=shade(body, 0.7))
        draw.rectangle((252, 220, 268, 500), fill=shade(body, 1.15))
        draw.ellipse((230, 200, 370, 240), fill=shade(body, 0.85))
        draw.line([(300, 205), (300, 150), (420, 150)], fill=ink, width=14, joint="curve")
        draw.ellipse((405, 120, 455, 170), fill=ink)
    elif "kettle" in slug:
        draw.rounded_rectangle((170, 250, 410, 500), radius=50, fill=body)
        draw.rectangle((190, 262, 215, 488), fill=shade(body, 1.12))
        draw.line(
            [(200, 450), (120, 420), (90, 280), (60, 250)], fill=body, width=16, joint="curve"
        )
        draw.ellipse((220, 222, 360, 262), fill=shade(body, 0.8))
        draw.ellipse((275, 200, 305, 228), fill=ink)
        draw.arc((330, 230, 480, 420), 280, 80, fill=ink, width=18)
    else:
        draw.rounded_rectangle((180, 230, 400, 490), radius=30, fill=body)
        draw.rectangle((200, 240, 222, 480), fill=shade(body, 1.12))
        draw.ellipse((180, 212, 400, 252), fill=shade(body, 0.75))
        draw.ellipse((196, 220, 384, 246), fill=(60, 36, 24))
        draw.arc((360, 280, 470, 420), 270, 90, fill=body, width=24)
        for i in range(3):
            draw.arc((250 + 30 * i, 120, 300 + 30 * i, 210), 200, 340, fill=ink, width=4)
    draw.text((300, 570), "EMBER", font=font(16, bold=True), fill=ink, anchor="mm")
    return image


def beans(roast: str) -> Image.Image:
    colors = {
        "light": ((205, 160, 110), (150, 100, 60)),
        "medium": ((150, 95, 55), (100, 60, 35)),
        "medium-dark": ((105, 62, 38), (70, 40, 25)),
        "dark": ((62, 40, 30), (35, 22, 18)),
    }
    bean, crease = colors[roast]
    image = background((238, 230, 218))
    draw = ImageDraw.Draw(image)
    rng = random.Random(roast)
    for _ in range(150):
        cx, cy = rng.randint(-20, SIZE + 20), rng.randint(-20, SIZE + 20)
        angle = rng.uniform(0, math.pi)
        w, h = rng.randint(34, 42), rng.randint(24, 30)
        tone = rng.uniform(0.85, 1.15)
        points = [
            (
                cx + w * math.cos(t) * math.cos(angle) - h * math.sin(t) * math.sin(angle),
                cy + w * math.cos(t) * math.sin(angle) + h * math.sin(t) * math.cos(angle),
            )
            for t in (2 * math.pi * i / 40 for i in range(40))
        ]
        draw.polygon(points, fill=shade(bean, tone))
        dx, dy = w * 0.8 * math.cos(angle), w * 0.8 * math.sin(angle)
        draw.line(
            [(cx - dx, cy - dy), (cx, cy + 3), (cx + dx, cy + dy)],
            fill=crease,
            width=3,
            joint="curve",
        )
    return image


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = json.loads((DEMO / "catalog.json").read_text())
    for product in data["products"]:
        image = gear(product) if product["category"] == "brewing-gear" else coffee_bag(product)
        image.save(OUT / f"{product['slug']}.webp", "WEBP", quality=78, method=6)
    for roast in ("light", "medium", "medium-dark", "dark"):
        beans(roast).save(OUT / f"beans-{roast}.webp", "WEBP", quality=70, method=6)
    total = sum(p.stat().st_size for p in OUT.glob("*.webp"))
    print(f"{len(list(OUT.glob('*.webp')))} images, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
