"""Mandarin tone sandhi as Bert-VITS2 v2.3 applies it (PaddleSpeech-style rules).

Finals are pypinyin ``FINALS_TONE3`` strings ending in the tone digit (``"ao3"``; 5 = neutral).
Two stages, both operating on jieba ``(word, pos)`` pairs:

* :meth:`ToneSandhi.pre_merge` joins words whose tone depends on their neighbours into one word
  (不 + next word, 一 + next word, reduplications, runs of third tones, 儿 suffixes);
* :meth:`ToneSandhi.modified_tone` rewrites the finals of one word: 不 rules, 一 rules, neutral-tone
  rules (particles, suffixes, reduplications, lexicalised neutral-tone words) and third-tone sandhi.

Reproducing the upstream output exactly (checkpoints were trained on it) is the goal, including its quirks.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

# Words whose last syllable is lexically neutral (checked on the whole word and on its last two characters).
NEUTRAL_TONE_WORDS: frozenset[str] = frozenset(
    """
    麻烦 麻利 鸳鸯 高粱 骨头 骆驼 马虎 首饰 馒头 馄饨 风筝 难为 队伍 阔气 闺女 门道 锄头 铺盖 铃铛 铁匠 钥匙 里脊
    里头 部分 那么 道士 造化 迷糊 连累 这么 这个 运气 过去 软和 转悠 踏实 跳蚤 跟头 趔趄 财主 豆腐 讲究 记性 记号
    认识 规矩 见识 裁缝 补丁 衣裳 衣服 衙门 街坊 行李 行当 蛤蟆 蘑菇 薄荷 葫芦 葡萄 萝卜 荸荠 苗条 苗头 苍蝇 芝麻
    舒服 舒坦 舌头 自在 膏药 脾气 脑袋 脊梁 能耐 胳膊 胭脂 胡萝 胡琴 胡同 聪明 耽误 耽搁 耷拉 耳朵 老爷 老实 老婆
    老头 老太 翻腾 罗嗦 罐头 编辑 结实 红火 累赘 糨糊 糊涂 精神 粮食 簸箕 篱笆 算计 算盘 答应 笤帚 笑语 笑话 窟窿
    窝囊 窗户 稳当 稀罕 称呼 秧歌 秀气 秀才 福气 祖宗 砚台 码头 石榴 石头 石匠 知识 眼睛 眯缝 眨巴 眉毛 相声 盘算
    白净 痢疾 痛快 疟疾 疙瘩 疏忽 畜生 生意 甘蔗 琵琶 琢磨 琉璃 玻璃 玫瑰 玄乎 狐狸 状元 特务 牲口 牙碜 牌楼 爽快
    爱人 热闹 烧饼 烟筒 烂糊 点心 炊帚 灯笼 火候 漂亮 滑溜 溜达 温和 清楚 消息 浪头 活泼 比方 正经 欺负 模糊 槟榔
    棺材 棒槌 棉花 核桃 栅栏 柴火 架势 枕头 枇杷 机灵 本事 木头 木匠 朋友 月饼 月亮 暖和 明白 时候 新鲜 故事 收拾
    收成 提防 挖苦 挑剔 指甲 指头 拾掇 拳头 拨弄 招牌 招呼 抬举 护士 折腾 扫帚 打量 打算 打点 打扮 打听 打发 扎实
    扁担 戒指 懒得 意识 意思 情形 悟性 怪物 思量 怎么 念头 念叨 快活 忙活 志气 心思 得罪 张罗 弟兄 开通 应酬 庄稼
    干事 帮手 帐篷 希罕 师父 师傅 巴结 巴掌 差事 工夫 岁数 屁股 尾巴 少爷 小气 小伙 将就 对头 对付 寡妇 家伙 客气
    实在 官司 学问 学生 字号 嫁妆 媳妇 媒人 婆家 娘家 委屈 姑娘 姐夫 妯娌 妥当 妖精 奴才 女婿 头发 太阳 大爷 大方
    大意 大夫 多少 多么 外甥 壮实 地道 地方 在乎 困难 嘴巴 嘱咐 嘟囔 嘀咕 喜欢 喇嘛 喇叭 商量 唾沫 哑巴 哈欠 哆嗦
    咳嗽 和尚 告诉 告示 含糊 吓唬 后头 名字 名堂 合同 吆喝 叫唤 口袋 厚道 厉害 千斤 包袱 包涵 匀称 勤快 动静 动弹
    功夫 力气 前头 刺猬 刺激 别扭 利落 利索 利害 分析 出息 凑合 凉快 冷战 冤枉 冒失 养活 关系 先生 兄弟 便宜 使唤
    佩服 作坊 体面 位置 似的 伙计 休息 什么 人家 亲戚 亲家 交情 云彩 事情 买卖 主意 丫头 丧气 两口 东西 东家 世故
    不由 不在 下水 下巴 上头 上司 丈夫 丈人 一辈 那个 菩萨 父亲 母亲 咕噜 邋遢 费用 冤家 甜头 介绍 荒唐 大人 泥鳅
    幸福 熟悉 计划 扑腾 蜡烛 姥爷 照顾 喉咙 吉他 弄堂 蚂蚱 凤凰 拖沓 寒碜 糟蹋 倒腾 报复 逻辑 盘缠 喽啰 牢骚 咖喱
    扫把 惦记
    """.split()
)

# Words that look like neutral-tone patterns (X子, reduplication) but keep their full tone.
NOT_NEUTRAL_TONE_WORDS: frozenset[str] = frozenset("男子 女子 分子 原子 量子 莲子 石子 瓜子 电子 人人 虎虎".split())

# Sentence-final particles and structural particles that are read with the neutral tone.
_NEUTRAL_PARTICLES = "吧呢啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶"
_STRUCTURAL_PARTICLES = "的地得"
# Punctuation after which 一 keeps its first tone ("一," reads yi1).
_YI_KEEPS_TONE_BEFORE = "：，；。？！“”‘’':,;.?!"

Pairs = list[list[str]]
Splitter = Callable[[str], Sequence[str]]


def _set_tone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _all_third(finals: Sequence[str]) -> bool:
    # Indexing x[-1] on an empty final raises IndexError, as upstream does for syllables such as 噷 (hm).
    return all(x[-1] == "3" for x in finals)


class ToneSandhi:
    """Tone sandhi over jieba segments.

    ``finals_of(word)`` returns the pypinyin FINALS_TONE3 list of a word (neutral tone as 5) and
    ``search_cut(word)`` the jieba cut_for_search of a word; both are injected so that the rules stay
    independent of how the segmenter and pinyin library are loaded.
    """

    def __init__(self, finals_of: Callable[[str], list[str]], search_cut: Splitter) -> None:
        self.finals_of = finals_of
        self.search_cut = search_cut

    # ------------------------------------------------------------------ word-level rules
    def split_word(self, word: str) -> list[str]:
        """Split a word in two around its shortest search-mode sub-word (first sub-word kept whole)."""
        pieces = sorted(self.search_cut(word), key=len)
        first = pieces[0]
        if word.find(first) == 0:
            return [first, word[len(first):]]
        return [word[: -len(first)], first]

    def bu_sandhi(self, word: str, finals: list[str]) -> list[str]:
        if len(word) == 3 and word[1] == "不":  # 看不懂: middle 不 is neutral
            finals[1] = _set_tone(finals[1], "5")
            return finals
        for i, char in enumerate(word):
            if char == "不" and i + 1 < len(word) and finals[i + 1][-1] == "4":  # 不怕 -> bu2
                finals[i] = _set_tone(finals[i], "2")
        return finals

    def yi_sandhi(self, word: str, finals: list[str]) -> list[str]:
        if "一" in word and all(ch.isnumeric() for ch in word if ch != "一"):
            return finals  # a number: 一百一十一, 一零一
        if len(word) == 3 and word[1] == "一" and word[0] == word[-1]:
            finals[1] = _set_tone(finals[1], "5")  # 看一看
            return finals
        if word.startswith("第一"):
            finals[1] = _set_tone(finals[1], "1")  # ordinal
            return finals
        for i, char in enumerate(word):
            if char == "一" and i + 1 < len(word):
                if finals[i + 1][-1] == "4":
                    finals[i] = _set_tone(finals[i], "2")  # 一段
                elif word[i + 1] not in _YI_KEEPS_TONE_BEFORE:
                    finals[i] = _set_tone(finals[i], "4")  # 一天
        return finals

    def neutral_sandhi(self, word: str, pos: str, finals: list[str]) -> list[str]:
        # Reduplicated nouns/verbs/adjectives: the repeated syllable is neutral (奶奶, 试试).
        for j in range(1, len(word)):
            if word[j] == word[j - 1] and pos[0] in "nva" and word not in NOT_NEUTRAL_TONE_WORDS:
                finals[j] = _set_tone(finals[j], "5")
        ge_idx = word.find("个")
        if word and word[-1] in _NEUTRAL_PARTICLES:
            finals[-1] = _set_tone(finals[-1], "5")
        elif word and word[-1] in _STRUCTURAL_PARTICLES:
            finals[-1] = _set_tone(finals[-1], "5")
        elif len(word) > 1 and word[-1] in "们子" and pos in ("r", "n") and word not in NOT_NEUTRAL_TONE_WORDS:
            finals[-1] = _set_tone(finals[-1], "5")
        elif len(word) > 1 and word[-1] in "上下里" and pos in ("s", "l", "f"):  # 桌上, 家里
            finals[-1] = _set_tone(finals[-1], "5")
        elif len(word) > 1 and word[-1] in "来去" and word[-2] in "上下进出回过起开":  # 上来, 出去
            finals[-1] = _set_tone(finals[-1], "5")
        elif (ge_idx >= 1 and (word[ge_idx - 1].isnumeric() or word[ge_idx - 1] in "几有两半多各整每做是")) or word == "个":
            finals[ge_idx] = _set_tone(finals[ge_idx], "5")  # measure word 个
        elif word in NEUTRAL_TONE_WORDS or word[-2:] in NEUTRAL_TONE_WORDS:
            finals[-1] = _set_tone(finals[-1], "5")

        parts = self.split_word(word)
        head = len(parts[0])
        groups = [finals[:head], finals[head:]]
        for part, group in zip(parts, groups):
            if part in NEUTRAL_TONE_WORDS or part[-2:] in NEUTRAL_TONE_WORDS:
                group[-1] = _set_tone(group[-1], "5")
        return groups[0] + groups[1]

    def three_sandhi(self, word: str, finals: list[str]) -> list[str]:
        if len(word) == 2 and _all_third(finals):
            finals[0] = _set_tone(finals[0], "2")
        elif len(word) == 3:
            parts = self.split_word(word)
            head = len(parts[0])
            if _all_third(finals):
                if head == 2:  # 蒙古/包
                    finals[0] = _set_tone(finals[0], "2")
                    finals[1] = _set_tone(finals[1], "2")
                elif head == 1:  # 纸/老虎
                    finals[1] = _set_tone(finals[1], "2")
            else:
                groups = [finals[:head], finals[head:]]
                for i, group in enumerate(groups):
                    if len(group) == 2 and _all_third(group):  # 所有/人
                        group[0] = _set_tone(group[0], "2")
                    elif i == 1 and not _all_third(group) and group[0][-1] == "3" and groups[0][-1][-1] == "3":
                        groups[0][-1] = _set_tone(groups[0][-1], "2")  # 好/喜欢
                finals = groups[0] + groups[1]
        elif len(word) == 4:  # idioms: two two-syllable halves
            out: list[str] = []
            for group in (finals[:2], finals[2:]):
                if _all_third(group):
                    group[0] = _set_tone(group[0], "2")
                out += group
            finals = out
        return finals

    def modified_tone(self, word: str, pos: str, finals: list[str]) -> list[str]:
        """All word-level rules in upstream order: 不, 一, neutral tone, third tone."""
        finals = self.bu_sandhi(word, finals)
        finals = self.yi_sandhi(word, finals)
        finals = self.neutral_sandhi(word, pos, finals)
        return self.three_sandhi(word, finals)

    # ------------------------------------------------------------------ segment merging
    @staticmethod
    def merge_bu(seg: Sequence[Sequence[str]]) -> Pairs:
        """Attach 不 to the following word (a trailing 不 stays alone, tagged 'd')."""
        out: Pairs = []
        last = ""
        for word, pos in seg:
            if last == "不":
                word = last + word
            if word != "不":
                out.append([word, pos])
            last = word
        if last == "不":
            out.append([last, "d"])
        return out

    @staticmethod
    def merge_yi(seg: Pairs) -> Pairs:
        """V一V reduplications become one word; then 一 is attached to the following word.

        Upstream writes the merged V一V at index ``i - 1`` of its output; after the first merge that
        index is out of range and the whole step is abandoned (caught by the caller), which we keep.
        """
        out: Pairs = []
        for i, (word, pos) in enumerate(seg):
            if i >= 1 and word == "一" and i + 1 < len(seg) and seg[i - 1][0] == seg[i + 1][0] and seg[i - 1][1] == "v":
                out[i - 1][0] = out[i - 1][0] + "一" + out[i - 1][0]
            elif i >= 2 and seg[i - 1][0] == "一" and seg[i - 2][0] == word and pos == "v":
                continue
            else:
                out.append([word, pos])
        merged: Pairs = []
        for word, pos in out:
            if merged and merged[-1][0] == "一":
                merged[-1][0] = merged[-1][0] + word
            else:
                merged.append([word, pos])
        return merged

    @staticmethod
    def merge_reduplication(seg: Pairs) -> Pairs:
        out: Pairs = []
        for word, pos in seg:
            if out and word == out[-1][0]:
                out[-1][0] = out[-1][0] + word
            else:
                out.append([word, pos])
        return out

    def _merge_third_tones(self, seg: Pairs, joinable: Callable[[list[str], list[str]], bool]) -> Pairs:
        finals = [self.finals_of(word) for word, _ in seg]
        out: Pairs = []
        merged_last = [False] * len(seg)
        for i, (word, pos) in enumerate(seg):
            if (
                i >= 1
                and joinable(finals[i - 1], finals[i])
                and not merged_last[i - 1]
                and not (len(seg[i - 1][0]) == 2 and seg[i - 1][0][0] == seg[i - 1][0][1])
                and len(seg[i - 1][0]) + len(word) <= 3
            ):
                out[-1][0] = out[-1][0] + word
                merged_last[i] = True
            else:
                out.append([word, pos])
        return out

    def merge_continuous_three_tones(self, seg: Pairs) -> Pairs:
        """Two adjacent all-third-tone words of at most 3 characters together become one word."""
        return self._merge_third_tones(seg, lambda a, b: _all_third(a) and _all_third(b))

    def merge_continuous_three_tones_2(self, seg: Pairs) -> Pairs:
        """Adjacent words meeting on two third tones (last of one, first of the next) become one word."""
        return self._merge_third_tones(seg, lambda a, b: a[-1][-1] == "3" and b[0][-1] == "3")

    @staticmethod
    def merge_er(seg: Pairs) -> Pairs:
        out: Pairs = []
        for i, (word, pos) in enumerate(seg):
            if i >= 1 and word == "儿" and seg[i - 1][0] != "#":
                out[-1][0] = out[-1][0] + word
            else:
                out.append([word, pos])
        return out

    def pre_merge(self, seg: Sequence[Sequence[str]]) -> Pairs:
        """Merge jieba ``(word, pos)`` pairs the way upstream does before applying the tone rules."""
        pairs = self.merge_bu(seg)
        try:
            pairs = self.merge_yi(pairs)
        except IndexError:
            logger.debug("merge_yi abandoned for %r (upstream behaviour)", pairs)
        pairs = self.merge_reduplication(pairs)
        pairs = self.merge_continuous_three_tones(pairs)
        pairs = self.merge_continuous_three_tones_2(pairs)
        return self.merge_er(pairs)
