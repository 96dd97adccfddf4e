"""A tiny random CheXbert in the published format, a bert-style vocabulary, and report texts."""

from pathlib import Path

WORDS = ("no yes normal heart size is are the a of and with there mild moderate severe small large left right "
         "bilateral pleural effusion effusions pneumothorax edema pulmonary cardiomegaly enlarged cardiac "
         "silhouette consolidation opacity opacities atelectasis pneumonia lung lungs clear fracture rib tube "
         "line catheter pacemaker lesion nodule mass may possible likely cannot be excluded evidence of "
         "focal acute process stable unchanged mediastinum cardiomediastinal basilar base bases lower upper "
         "lobe within limits").split()


def write_vocab(folder: Path) -> Path:
    """vocab.txt in BERT's layout: specials, whole words, characters and their ## continuations."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?-()/%'")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + chars + [f"##{c}" for c in chars] + ["##s"]
    seen, out = set(), []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            out.append(t)
    (folder / "vocab.txt").write_text("\n".join(out) + "\n")
    return folder


def tiny_config(vocab_size: int, hidden: int = 128, layers: int = 2):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=hidden // 64, intermediate_size=2 * hidden, max_position_embeddings=512)


def randomise(model, seed: int = 0, std: float = 0.5):
    """Wide random weights, so the heads disagree across reports (BERT's 0.02 init labels all alike)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


REPORTS = [
    "No pleural effusion. Normal heart size.",
    "Normal heart size.",
    "Increased mild pulmonary edema and left basal atelectasis.",
    "Bilateral lower lobe consolidation.\nPossible pneumonia.",
    "Large left pleural effusion with  adjacent   atelectasis.",
    "The heart is enlarged. Cardiomegaly is stable.",
    "",
    "   ",
    "No focal consolidation, pleural effusion or pneumothorax.",
    "Right upper lobe nodule. Mass cannot be excluded.",
    "Left rib fracture. Small pneumothorax.",
    "Tube and line in place. Pacemaker is unchanged.",
    "The lungs are clear. The cardiomediastinal silhouette is within normal limits.",
    "Mild opacity at the lung bases may be atelectasis or pneumonia.",
    "Enlarged cardiac silhouette with moderate pulmonary edema and bilateral effusions.",
    "Ünïcode — tëxt with odd characters: 5% 3/4 (stable).",
    "lung " * 700,  # longer than 512 tokens: cut as the reference cuts
    "No acute cardiopulmonary process.",
    "Likely left lower lobe pneumonia. No effusion.",
    "Severe cardiomegaly. Pleural effusions are large.",
]
