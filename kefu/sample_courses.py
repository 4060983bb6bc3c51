"""The sample shop's training courses: "Tea brewing basics" in English and "泡茶入门" in Chinese, three lessons
each with a quiz. Loading is idempotent: a course whose key exists is left as it is."""

from __future__ import annotations

from typing import Any

from crm_store.crm import CRM

IMAGES = "https://kefu-tea.example/courses"

SAMPLE_COURSES: list[dict[str, Any]] = [
    {
        "key": "tea-brewing-basics-en",
        "language": "en",
        "title": "Tea brewing basics",
        "description": "Three short lessons on water, leaf and time, so every cup tastes as it should.",
        "lessons": [
            {
                "title": "Water and temperature",
                "body": "Good tea starts with **fresh, soft water**: filtered tap water is fine, distilled water "
                        "tastes flat.\n\n*Temperature matters more than anything else:*\n"
                        "- green and white tea: 75–80 °C\n- oolong: 90–95 °C\n- black and pu'er: 95–100 °C\n\n"
                        "Too hot, and delicate green tea turns bitter.",
                "image_url": f"{IMAGES}/water-temperature.png",
                "quiz": [
                    {"prompt": "Which water temperature suits a green tea such as Longjing?",
                     "options": ["100 °C, just boiled", "75–80 °C", "50 °C"], "correct": 1,
                     "explanation": "Green tea is delicate: 75–80 °C keeps it sweet instead of bitter."},
                ],
            },
            {
                "title": "How much leaf, how long",
                "body": "A simple rule for Western-style brewing: **2–3 g of leaf for 200 ml of water**.\n\n"
                        "- green tea: 2–3 minutes\n- oolong: 3–4 minutes\n- black tea: 3–5 minutes\n\n"
                        "If the cup is bitter, steep shorter or cooler before you use less leaf.",
                "link_url": "https://kefu-tea.example/guides/brewing-chart",
                "quiz": [
                    {"prompt": "How much leaf for a 200 ml cup?",
                     "options": ["About 1 teaspoon (2–3 g)", "A handful (15 g)", "A pinch (0.5 g)"], "correct": 0,
                     "explanation": "2–3 g per 200 ml is the everyday Western-style measure."},
                    {"prompt": "Your tea tastes bitter. What should you change first?",
                     "options": ["Add more leaf", "Steep shorter or cooler", "Use boiling water"], "correct": 1,
                     "explanation": "Bitterness comes from over-extraction: less time or cooler water fixes it."},
                ],
            },
            {
                "title": "Gongfu style: many short infusions",
                "body": "Gongfu brewing uses **more leaf, less water and very short steeps** in a gaiwan or small "
                        "teapot: 5–7 g in 100–150 ml, 10–20 seconds for the first infusion, a little longer "
                        "each time.\n\nA good oolong or pu'er gives *five infusions or more*, each a little "
                        "different.",
                "quiz": [
                    {"prompt": "How many infusions can a good oolong give, gongfu style?",
                     "options": ["Only one", "Two at most", "Five or more"], "correct": 2,
                     "explanation": "Short steeps leave flavour in the leaf for many rounds."},
                ],
            },
        ],
    },
    {
        "key": "tea-brewing-basics-zh",
        "language": "zh",
        "title": "泡茶入门",
        "description": "三节短课：水、茶量和时间，让每一杯茶都恰到好处。",
        "lessons": [
            {
                "title": "水与水温",
                "body": "好茶先要**好水**：过滤后的自来水即可，纯净水泡茶口感偏淡。\n\n*水温最关键：*\n"
                        "- 绿茶、白茶：75–80 °C\n- 乌龙茶：90–95 °C\n- 红茶、普洱：95–100 °C\n\n"
                        "水温过高，娇嫩的绿茶会变苦。",
                "image_url": f"{IMAGES}/water-temperature-zh.png",
                "quiz": [
                    {"prompt": "冲泡龙井这样的绿茶，适合什么水温？",
                     "options": ["100 °C 沸水", "75–80 °C", "50 °C"], "correct": 1,
                     "explanation": "绿茶细嫩，75–80 °C 的水能保持甘甜而不苦涩。"},
                ],
            },
            {
                "title": "投茶量与冲泡时间",
                "body": "日常杯泡的简单规则：**200 毫升水配 2–3 克茶**。\n\n"
                        "- 绿茶：2–3 分钟\n- 乌龙茶：3–4 分钟\n- 红茶：3–5 分钟\n\n"
                        "茶汤发苦时，先缩短时间或降低水温，再考虑减少茶量。",
                "link_url": "https://kefu-tea.example/guides/brewing-chart-zh",
                "quiz": [
                    {"prompt": "一杯 200 毫升的茶，投多少茶叶合适？",
                     "options": ["约一茶匙（2–3 克）", "一大把（15 克）", "一小撮（0.5 克）"], "correct": 0,
                     "explanation": "杯泡时每 200 毫升 2–3 克是最常用的投茶量。"},
                    {"prompt": "茶汤发苦，首先应该调整什么？",
                     "options": ["多放茶叶", "缩短时间或降低水温", "改用沸水"], "correct": 1,
                     "explanation": "苦涩来自过度萃取：缩短时间或降低水温即可改善。"},
                ],
            },
            {
                "title": "功夫茶：多次短泡",
                "body": "功夫泡法用盖碗或小壶，**茶多、水少、出汤快**：100–150 毫升水投 5–7 克茶，第一泡 10–20 秒，"
                        "之后每泡稍微延长。\n\n好的乌龙或普洱可以冲泡*五泡以上*，每一泡风味各不相同。",
                "quiz": [
                    {"prompt": "用功夫泡法，一泡好乌龙大约能冲几次？",
                     "options": ["只能一次", "最多两次", "五次以上"], "correct": 2,
                     "explanation": "短时间出汤，茶叶的滋味可以保留很多轮。"},
                ],
            },
        ],
    },
]


async def load_sample_courses(crm: CRM) -> int:
    """Create the sample courses that are not there yet; returns how many sample courses exist."""
    for course in SAMPLE_COURSES:
        if await crm.courses.find_course(key=course["key"]) is None:
            await crm.courses.create_course(**course)
    return len(SAMPLE_COURSES)
