//! The words the sample site writes with: Chinese tech-news phrases in the style of the
//! sample post (`shared/samples/36kr-cross-border-ecommerce.md`), with some English names
//! mixed in as real Chinese articles do, and the sentence builders that use them.
//!
//! Text only: no HTML, no I/O.

use super::rng::Rng;

/// Subjects: companies, people and groups that tech news writes about.
const SUBJECTS: &[&str] = &[
    "字节跳动",
    "快手",
    "阿里巴巴",
    "腾讯",
    "京东",
    "拼多多",
    "美团",
    "小米",
    "华为",
    "SHEIN",
    "Tik Tok",
    "亚马逊",
    "速卖通",
    "沃尔玛",
    "Jet Commerce",
    "行云集团",
    "华映资本",
    "元气森林",
    "完美日记",
    "大疆",
    "OPPO",
    "蔚来",
    "理想汽车",
    "比亚迪",
    "宁德时代",
    "互联网大厂",
    "跨境卖家",
    "头部主播",
    "新消费品牌",
    "一级市场",
    "投资人",
    "从业者",
    "服务商",
    "海外消费者",
    "中小商家",
    "独立站",
    "SaaS服务商",
    "MCN机构",
    "供应链企业",
];

/// Verb phrases.
const PREDICATES: &[&str] = &[
    "加码电商出海",
    "将直播电商带到了拉美地区",
    "推出海外独立电商平台",
    "上线跨境电商业务",
    "重新调整海外业务方向",
    "搭建基础建设",
    "展开了合作",
    "完成了新一轮融资",
    "开始在布局跨境电商",
    "对海外市场报以了更高的关注",
    "释放出调整战略的信号",
    "进一步扩大出口业务",
    "在东南亚市场试水",
    "回到国内市场",
    "注重品牌化",
    "清理平台上的低质量商家",
    "提高新商家的入驻门槛",
    "加大研发投入",
    "发布了全新的产品线",
    "宣布裁员并收缩业务",
    "实现了扭亏为盈",
    "押注人工智能",
    "重启海外扩张计划",
    "launched a new AI assistant",
    "raised a Series B round",
    "opened an office in Singapore",
];

/// Clauses that can open or close a sentence.
const CLAUSES: &[&str] = &[
    "据从业者透露",
    "根据彭博社的报道",
    "有服务商告诉Tech星球",
    "据业内透露",
    "据36氪报道",
    "根据海关总署公布的数据",
    "一位投资人表示",
    "在他们看来",
    "实际上",
    "此外",
    "另一方面",
    "与此同时",
    "可以说",
    "不仅如此",
    "值得注意的是",
    "从长远角度来看",
    "相比此前",
    "今年年初",
    "去年以来",
    "在全球疫情的催化下",
];

/// Whole sentences lifted in spirit from real coverage; they anchor the style.
const SENTENCES: &[&str] = &[
    "跨境电商的这块万亿蛋糕，再次吸引了互联网大厂们的注意。",
    "但跨境电商现在是被“神话”的行业，一夜暴富，一夜破产都在转瞬间。",
    "疫情的影响，消费热情的冷却，都给跨境电商增加了几分冷调。",
    "国内的绝大部分商家并不缺实力，而是出去闯一闯的机遇。",
    "新玩家的不断布局让整个行业有了新鲜血液。",
    "一级市场的嗅觉往往更敏锐。",
    "国内的供应链绝对的成熟，让国内品牌有绝对的效率，即便加上了履约，成本还是很低。",
    "现阶段是国内供应链和制造业的新窗口期。",
    "新兴平台的诞生意味着有新的流量，但也并不代表所有商家都可以吃到现阶段的红利。",
    "目前行业正在大洗牌期，趋于合规化是大趋势。",
    "看似被疫情阻断的船，实际上早以整装待发。",
    "看似遇冷的跨境电商，实则暗潮涌动。",
    "这意味着，在早期可以自然衔接其他平台流出的商家，来快速建立基础框架。",
    "由中国产品转向中国品牌出海依然需要时间，但目前已经有一些品类趋势出现。",
    "The market is moving faster than most analysts expected.",
    "母婴、3C数码、大宗家居家具等品类成为当下出海主流。",
];

/// Who said it, closing a quoted sentence.
const ATTRIBUTIONS: &[&str] = &[
    "一位投资人表示",
    "有服务商告诉Tech星球",
    "华映资本相关投资人表示",
    "多位从业者告诉Tech星球",
    "业内人士分析称",
    "一位跨境卖家说",
    "据36氪报道",
];

/// Numbers and facts, as Chinese business reporting loves them.
const FIGURES: &[&str] = &[
    "同比增长超过250%",
    "估值高达300亿美元",
    "月均销售额为12亿美元",
    "增长21.4%",
    "融资超108.18亿",
    "5年增长近10倍",
    "销量能达到TOP5",
    "市场份额超过三成",
    "用户规模突破1亿",
    "毛利率提升至32%",
    "GMV达到500亿元",
    "亏损收窄至8.6亿元",
];

/// Section headings (`<h2>`).
const HEADINGS: &[&str] = &[
    "大厂目光转向海外",
    "国内供应链的成熟推动品牌出海",
    "跨境迎来第三波红利期？",
    "新玩家入局",
    "资本的判断",
    "平台规则生变",
    "品牌化是唯一出路",
    "下一站：东南亚",
    "AI能否带来新的增长曲线",
    "写在最后",
];

/// Title stems; a title is a stem plus a question or claim.
const TITLE_STEMS: &[&str] = &[
    "互联网新贵抢出海",
    "大厂集体盯上跨境电商",
    "直播电商的下半场",
    "新消费品牌的生死局",
    "SaaS服务商的春天",
    "独立站还有机会吗",
    "出海淘金的第三波浪潮",
    "供应链的新窗口期",
    "AI大模型落地电商",
    "拉美市场的淘金者",
    "东南亚电商混战",
    "品牌出海元年",
];

const TITLE_TAILS: &[&str] = &[
    "谁的跨境电商红利？",
    "谁在悄悄赚钱？",
    "下一个SHEIN在哪里？",
    "机会还是陷阱？",
    "一场没有硝烟的战争",
    "卖家们怎么看",
    "投资人给出了答案",
    "三个关键变量",
];

/// Categories for the front matter and the `<meta name="keywords">`.
pub(crate) const CATEGORIES: &[&str] = &["新媒体", "36kr", "资讯", "科技", "电商", "出海", "投资"];

/// Authors (a wire name and a byline), as in the sample's `文 | 习睿`.
pub(crate) const AUTHORS: &[&str] = &["习睿", "王晨", "李想", "Tech星球", "36kr", "晚点LatePost"];

/// A title such as `互联网新贵抢出海，谁的跨境电商红利？`; `n` makes titles unique.
pub(crate) fn title(rng: &mut Rng, n: usize) -> String {
    format!("{}，{}（{}）", rng.pick(TITLE_STEMS), rng.pick(TITLE_TAILS), n)
}

/// A section heading.
pub(crate) fn heading(rng: &mut Rng) -> &'static str {
    rng.pick(HEADINGS)
}

/// One sentence, built from the phrase tables or taken whole.
pub(crate) fn sentence(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => rng.pick(SENTENCES).to_owned(),
        1 => format!("{}，{}{}。", rng.pick(CLAUSES), rng.pick(SUBJECTS), rng.pick(PREDICATES)),
        2 => format!("{}{}，{}。", rng.pick(SUBJECTS), rng.pick(PREDICATES), rng.pick(FIGURES)),
        3 => format!("“{}{}”，{}。", rng.pick(SUBJECTS), rng.pick(PREDICATES), rng.pick(ATTRIBUTIONS)),
        _ => format!(
            "{}，{}年{}月，{}{}。",
            rng.pick(CLAUSES),
            rng.range(2015, 2024),
            rng.range(1, 12),
            rng.pick(SUBJECTS),
            rng.pick(PREDICATES)
        ),
    }
}

/// A paragraph of 2-6 sentences.
pub(crate) fn paragraph(rng: &mut Rng) -> String {
    let count = rng.range(2, 6);
    (0..count).map(|_| sentence(rng)).collect()
}

/// A subject name, for `<a class="project-link">` mentions.
pub(crate) fn subject(rng: &mut Rng) -> &'static str {
    rng.pick(SUBJECTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_chinese_and_unique_per_number() {
        let mut rng = Rng::new(1, "t", 0);
        let a = title(&mut rng, 1);
        let b = title(&mut rng, 2);
        assert_ne!(a, b);
        assert!(a.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)));
    }

    #[test]
    fn paragraphs_end_with_sentence_punctuation() {
        let mut rng = Rng::new(2, "t", 0);
        for _ in 0..50 {
            let p = paragraph(&mut rng);
            assert!(p.ends_with('。') || p.ends_with('.'), "{p}");
        }
    }

    #[test]
    fn every_phrase_is_representable_in_gbk() {
        let tables = [
            SUBJECTS,
            PREDICATES,
            CLAUSES,
            ATTRIBUTIONS,
            SENTENCES,
            FIGURES,
            HEADINGS,
            TITLE_STEMS,
            TITLE_TAILS,
            CATEGORIES,
            AUTHORS,
        ];
        for phrase in tables.iter().flat_map(|t| t.iter()) {
            let (_, _, unmappable) = encoding_rs::GBK.encode(phrase);
            assert!(!unmappable, "not in GBK: {phrase}");
        }
    }
}
