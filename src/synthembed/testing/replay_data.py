"""A small built-in reply set for the replay server, so tests and demos run without ../shared.

Twelve sentences written for this project, each in seven languages (a tiny parallel corpus), are combined into
rows of every family in the layout of the synthetic-frontier data set: {"family", "task", "language", "params",
"output"}. Every row passes `generate.validate.check` for the placeholders the tests ask for (retrieval documents
of 50 words, classification inputs of "at least 10" words).
"""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = {
    "English": [
        "The library opens at nine in the morning and closes late on Fridays.",
        "Regular exercise improves sleep quality and lowers the risk of heart disease.",
        "The new bridge connects the two halves of the old city across the river.",
        "Farmers in the valley grow apples, pears and plums on small family plots.",
        "Children learn a second language more easily when they hear it every day.",
        "The museum shows paintings by local artists from the last two centuries.",
        "Heavy rain flooded several streets, and the trains were delayed for hours.",
        "Our team fixed the software bug after testing the program on many computers.",
        "Fresh bread from the bakery on the corner smells wonderful in the morning.",
        "The doctor advised her to drink more water and to rest for a week.",
        "Solar panels on the school roof produce enough electricity for the whole building.",
        "The orchestra played a famous symphony at the festival last summer.",
    ],
    "German": [
        "Die Bibliothek öffnet um neun Uhr morgens und schließt freitags spät.",
        "Regelmäßige Bewegung verbessert die Schlafqualität und senkt das Risiko für Herzkrankheiten.",
        "Die neue Brücke verbindet die beiden Hälften der Altstadt über den Fluss.",
        "Die Bauern im Tal bauen auf kleinen Familienhöfen Äpfel, Birnen und Pflaumen an.",
        "Kinder lernen eine zweite Sprache leichter, wenn sie sie jeden Tag hören.",
        "Das Museum zeigt Gemälde von einheimischen Künstlern aus den letzten zwei Jahrhunderten.",
        "Starker Regen überflutete mehrere Straßen, und die Züge hatten stundenlang Verspätung.",
        "Unser Team hat den Softwarefehler behoben, nachdem es das Programm auf vielen Computern getestet hatte.",
        "Frisches Brot aus der Bäckerei an der Ecke riecht am Morgen wunderbar.",
        "Der Arzt riet ihr, mehr Wasser zu trinken und sich eine Woche lang auszuruhen.",
        "Die Solaranlagen auf dem Schuldach erzeugen genug Strom für das ganze Gebäude.",
        "Das Orchester spielte im letzten Sommer eine berühmte Sinfonie auf dem Festival.",
    ],
    "French": [
        "La bibliothèque ouvre à neuf heures du matin et ferme tard le vendredi.",
        "L'exercice régulier améliore la qualité du sommeil et réduit le risque de maladies cardiaques.",
        "Le nouveau pont relie les deux moitiés de la vieille ville au-dessus de la rivière.",
        "Les agriculteurs de la vallée cultivent des pommes, des poires et des prunes sur de petites parcelles.",
        "Les enfants apprennent plus facilement une deuxième langue lorsqu'ils l'entendent tous les jours.",
        "Le musée présente des tableaux d'artistes locaux des deux derniers siècles.",
        "De fortes pluies ont inondé plusieurs rues, et les trains ont eu des heures de retard.",
        "Notre équipe a corrigé le bogue du logiciel après avoir testé le programme sur de nombreux ordinateurs.",
        "Le pain frais de la boulangerie du coin sent merveilleusement bon le matin.",
        "Le médecin lui a conseillé de boire plus d'eau et de se reposer pendant une semaine.",
        "Les panneaux solaires sur le toit de l'école produisent assez d'électricité pour tout le bâtiment.",
        "L'orchestre a joué une symphonie célèbre au festival l'été dernier.",
    ],
    "Spanish": [
        "La biblioteca abre a las nueve de la mañana y cierra tarde los viernes.",
        "El ejercicio regular mejora la calidad del sueño y reduce el riesgo de enfermedades del corazón.",
        "El nuevo puente une las dos mitades de la ciudad vieja sobre el río.",
        "Los agricultores del valle cultivan manzanas, peras y ciruelas en pequeñas parcelas familiares.",
        "Los niños aprenden un segundo idioma con más facilidad cuando lo escuchan todos los días.",
        "El museo muestra cuadros de artistas locales de los dos últimos siglos.",
        "Las fuertes lluvias inundaron varias calles y los trenes se retrasaron durante horas.",
        "Nuestro equipo corrigió el error del programa después de probarlo en muchos ordenadores.",
        "El pan fresco de la panadería de la esquina huele de maravilla por la mañana.",
        "El médico le aconsejó beber más agua y descansar durante una semana.",
        "Los paneles solares del tejado de la escuela producen suficiente electricidad para todo el edificio.",
        "La orquesta tocó una sinfonía famosa en el festival el verano pasado.",
    ],
    "Russian": [
        "Библиотека открывается в девять часов утра и закрывается поздно по пятницам.",
        "Регулярные физические упражнения улучшают качество сна и снижают риск болезней сердца.",
        "Новый мост соединяет две половины старого города через реку.",
        "Фермеры в долине выращивают яблоки, груши и сливы на небольших семейных участках.",
        "Дети легче учат второй язык, когда слышат его каждый день.",
        "В музее выставлены картины местных художников за последние два столетия.",
        "Сильный дождь затопил несколько улиц, и поезда опаздывали на несколько часов.",
        "Наша команда исправила ошибку в программе после проверки на многих компьютерах.",
        "Свежий хлеб из пекарни на углу чудесно пахнет по утрам.",
        "Врач посоветовал ей пить больше воды и отдыхать в течение недели.",
        "Солнечные панели на крыше школы вырабатывают достаточно электричества для всего здания.",
        "Прошлым летом оркестр исполнил знаменитую симфонию на фестивале.",
    ],
    "Chinese": [
        "图书馆早上九点开门，星期五很晚才关门。",
        "经常锻炼可以提高睡眠质量，并降低患心脏病的风险。",
        "新建的大桥横跨河流，连接了老城的两个部分。",
        "山谷里的农民在小块家庭田地上种植苹果、梨和李子。",
        "孩子们如果每天都能听到第二语言，就会学得更容易。",
        "博物馆展出了当地艺术家近两个世纪以来的绘画作品。",
        "大雨淹没了好几条街道，火车晚点了好几个小时。",
        "我们的团队在许多电脑上测试程序之后，修复了这个软件错误。",
        "街角面包店的新鲜面包在早上闻起来香极了。",
        "医生建议她多喝水，并且休息一个星期。",
        "学校屋顶上的太阳能板发的电足够整栋楼使用。",
        "去年夏天，乐团在音乐节上演奏了一首著名的交响曲。",
    ],
    "Japanese": [
        "図書館は朝九時に開き、金曜日は遅くまで開いています。",
        "定期的な運動は睡眠の質を高め、心臓病のリスクを下げます。",
        "新しい橋が川を越えて旧市街の二つの地区を結んでいます。",
        "谷の農家は小さな家族経営の畑でりんごや梨やすももを育てています。",
        "子どもたちは毎日聞いていると、第二言語をより簡単に覚えます。",
        "その美術館では、この二百年間の地元の画家たちの絵を展示しています。",
        "大雨でいくつかの通りが浸水し、電車は何時間も遅れました。",
        "私たちのチームは多くのコンピューターでプログラムを試した後、ソフトウェアの不具合を直しました。",
        "角のパン屋の焼きたてのパンは、朝とてもいい香りがします。",
        "医者は彼女に、もっと水を飲んで一週間休むように勧めました。",
        "学校の屋根の太陽光パネルは、建物全体に十分な電気を作ります。",
        "去年の夏、オーケストラは音楽祭で有名な交響曲を演奏しました。",
    ],
}
LABELS = {
    "English": ["opening hours", "health", "infrastructure", "agriculture", "education", "art", "weather",
                "technology", "food", "medicine", "energy", "music"],
    "German": ["Öffnungszeiten", "Gesundheit", "Infrastruktur", "Landwirtschaft", "Bildung", "Kunst", "Wetter",
               "Technik", "Essen", "Medizin", "Energie", "Musik"],
    "French": ["horaires d'ouverture", "santé", "infrastructures", "agriculture", "éducation", "art", "météo",
               "technologie", "alimentation", "médecine", "énergie", "musique"],
    "Spanish": ["horario de apertura", "salud", "infraestructura", "agricultura", "educación", "arte", "clima",
                "tecnología", "comida", "medicina", "energía", "música"],
    "Russian": ["часы работы", "здоровье", "инфраструктура", "сельское хозяйство", "образование", "искусство",
                "погода", "технологии", "еда", "медицина", "энергетика", "музыка"],
    "Chinese": ["开放时间", "健康", "基础设施", "农业", "教育", "艺术", "天气", "科技", "食物", "医学", "能源", "音乐"],
    "Japanese": ["開館時間", "健康", "インフラ", "農業", "教育", "芸術", "天気", "技術", "食べ物", "医療", "エネルギー",
                 "音楽"],
}
LANGUAGES = tuple(SENTENCES)
TASK_POOLS = {
    "short-long": [
        "Given a question about a city service, retrieve a notice that answers it.",
        "Given a health question, retrieve an article with practical advice.",
        "Given a short news headline, retrieve the full news report.",
        "Given a question about farming, retrieve a guide written for small farms.",
        "Given a parent's question about schooling, retrieve an explanatory blog post.",
        "Given the name of an exhibition, retrieve the museum's description of it.",
        "Given a travel disruption query, retrieve the transport operator's update.",
        "Given an error description, retrieve the bug report that fixes it.",
        "Given a food craving, retrieve a description of a nearby bakery.",
        "Given a symptom, retrieve a doctor's recommendation for home care.",
        "Given a question about renewable energy, retrieve a case study of a school project.",
        "Given a concert title, retrieve a review of the performance.",
    ],
    "long-short": [
        "Classify a short news text by its main topic.",
        "Classify a community notice into the public service it concerns.",
        "Identify the subject area of a sentence from a school textbook.",
        "Classify a local newspaper paragraph by its section.",
        "Determine which hobby a personal diary entry is about.",
        "Classify a customer message by the department that should answer it.",
        "Assign a topic label to a radio announcement.",
        "Classify a social media post by the kind of event it describes.",
        "Identify the theme of a paragraph from a town guide.",
        "Classify a short report by the industry it describes.",
    ],
    "short-short": [
        "Given a sentence, retrieve a sentence about the same everyday situation.",
        "Match a short statement to another statement on the same topic.",
        "Given a headline, retrieve a related headline from another newspaper.",
        "Given a fact, retrieve a sentence that follows from it.",
        "Given a short description of a place, retrieve another description of it.",
        "Match a sentence to a sentence from a neighbouring paragraph.",
        "Given a one-line notice, retrieve a related one-line notice.",
        "Given a proverb-like sentence, retrieve a sentence with a similar message.",
        "Given a caption, retrieve a caption of a related photo.",
        "Match a sentence about a hobby to a sentence about a similar hobby.",
    ],
}


def _at(items: list[str], k: int) -> str:
    return items[k % len(items)]


def _join(language: str, sentences: list[str]) -> str:
    return ("" if language in ("Chinese", "Japanese") else " ").join(sentences)


def _rows(language: str, k: int) -> dict[str, dict]:
    """One row of each monolingual family, built around sentence k of `language`."""
    s, labels = SENTENCES[language], LABELS[language]
    tasks = TASK_POOLS
    return {
        "short-long": {"task": _at(tasks["short-long"], k), "params": {"num_words": 50}, "output": {
            "user_query": s[k],
            "positive_document": _join(language, [_at(s, k + i) for i in (1, 2, 3)]),
            "hard_negative_document": _join(language, [_at(s, k + i) for i in (4, 5, 6)])}},
        "long-short": {"task": _at(tasks["long-short"], k), "params": {"num_words": "at least 10"}, "output": {
            "input_text": _join(language, [s[k], _at(s, k + 1)]),
            "label": labels[k], "misleading_label": _at(labels, k + 2)}},
        "short-short": {"task": _at(tasks["short-short"], k), "params": {}, "output": {
            "input": s[k], "positive_document": _at(s, k + 1)}},
        "sts": {"task": None, "params": {"unit": "sentence", "high_score": 4, "low_score": 2.5,
                                         "difficulty": "high school"},
                "output": {"S1": s[k], "S2": _at(s, k + 1), "S3": _at(s, k + 2)}},
    }


def replay_rows() -> dict[str, list[dict]]:
    """family -> rows: one per (language, sentence) and, for bitext, per (English <-> other, direction, sentence)."""
    rows: dict[str, list[dict]] = {f: [] for f in ("short-long", "long-short", "short-short", "sts", "bitext")}
    for language in LANGUAGES:
        for k in range(len(SENTENCES[language])):
            for family, row in _rows(language, k).items():
                rows[family].append({"family": family, "language": language, **row})
    for other in LANGUAGES[1:]:
        for source, target in (("English", other), (other, "English")):
            for k in range(len(SENTENCES[source])):
                params = {"unit": "sentence", "high_score": 4.5, "low_score": 2, "difficulty": "high school",
                          "source_language": source, "target_language": target}
                output = {"S1": SENTENCES[source][k], "S2": SENTENCES[target][k],
                          "S3": _at(SENTENCES[target], k + 1)}
                rows["bitext"].append({"family": "bitext", "task": None, "language": source, "params": params,
                                       "output": output})
    return rows


def write_replay_data(directory: str | Path) -> Path:
    """Write <family>.jsonl files and task_pools.json (the replay server's --data layout) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for family, rows in replay_rows().items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (directory / f"{family}.jsonl").write_text(text, encoding="utf-8")
    (directory / "task_pools.json").write_text(json.dumps(TASK_POOLS, indent=1), encoding="utf-8")
    return directory
