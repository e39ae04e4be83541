"""The CIFAR-FS and FC100 class splits of CIFAR-100, embedded so fetched data needs no other download.

- CIFAR-FS (Bertinetto et al., ICLR 2019): 64 / 16 / 20 classes, Mini-ImageNet's layout.
- FC100 (Oreshkin et al., NeurIPS 2018): split by superclass, 60 / 20 / 20 classes (12 / 4 / 4 superclasses).

The lists come from torchmeta (``tristandeleu/pytorch-meta``, MIT License, Copyright (c) 2019
Tristan Deleu), commit ``d55d89ebd47f340180267106bde3e4b723f23762``, files
``torchmeta/datasets/assets/cifar100/{cifar-fs,fc100}/{train,val,test}.json``, by way of
``../shared/datasets/cifar_fs/classes.csv``, which re-encodes them as columns (a test checks the two
agree). Fine and coarse labels are CIFAR-100's own (alphabetical) indices.
"""
from __future__ import annotations

COLUMNS = ("fine_label", "fine_name", "coarse_label", "coarse_name", "cifar_fs_split", "fc100_split")

# (fine_label, fine_name, coarse_label, coarse_name, cifar_fs_split, fc100_split)
CLASSES: tuple[tuple[int, str, int, str, str, str], ...] = (
    (0, 'apple', 4, 'fruit_and_vegetables', 'train', 'train'),
    (1, 'aquarium_fish', 1, 'fish', 'train', 'train'),
    (2, 'baby', 14, 'people', 'test', 'test'),
    (3, 'bear', 8, 'large_carnivores', 'train', 'val'),
    (4, 'beaver', 0, 'aquatic_mammals', 'val', 'test'),
    (5, 'bed', 6, 'household_furniture', 'test', 'train'),
    (6, 'bee', 7, 'insects', 'train', 'test'),
    (7, 'beetle', 7, 'insects', 'val', 'test'),
    (8, 'bicycle', 18, 'vehicles_1', 'test', 'train'),
    (9, 'bottle', 3, 'food_containers', 'train', 'train'),
    (10, 'bowl', 3, 'food_containers', 'train', 'train'),
    (11, 'boy', 14, 'people', 'train', 'test'),
    (12, 'bridge', 9, 'large_man-made_outdoor_things', 'train', 'train'),
    (13, 'bus', 18, 'vehicles_1', 'train', 'train'),
    (14, 'butterfly', 7, 'insects', 'val', 'test'),
    (15, 'camel', 11, 'large_omnivores_and_herbivores', 'val', 'val'),
    (16, 'can', 3, 'food_containers', 'train', 'train'),
    (17, 'castle', 9, 'large_man-made_outdoor_things', 'train', 'train'),
    (18, 'caterpillar', 7, 'insects', 'train', 'test'),
    (19, 'cattle', 11, 'large_omnivores_and_herbivores', 'val', 'val'),
    (20, 'chair', 6, 'household_furniture', 'train', 'train'),
    (21, 'chimpanzee', 11, 'large_omnivores_and_herbivores', 'test', 'val'),
    (22, 'clock', 5, 'household_electrical_devices', 'train', 'train'),
    (23, 'cloud', 10, 'large_natural_outdoor_scenes', 'train', 'train'),
    (24, 'cockroach', 7, 'insects', 'train', 'test'),
    (25, 'couch', 6, 'household_furniture', 'train', 'train'),
    (26, 'crab', 13, 'non-insect_invertebrates', 'val', 'val'),
    (27, 'crocodile', 15, 'reptiles', 'val', 'train'),
    (28, 'cup', 3, 'food_containers', 'train', 'train'),
    (29, 'dinosaur', 15, 'reptiles', 'train', 'train'),
    (30, 'dolphin', 0, 'aquatic_mammals', 'train', 'test'),
    (31, 'elephant', 11, 'large_omnivores_and_herbivores', 'train', 'val'),
    (32, 'flatfish', 1, 'fish', 'val', 'train'),
    (33, 'forest', 10, 'large_natural_outdoor_scenes', 'train', 'train'),
    (34, 'fox', 12, 'medium_mammals', 'test', 'test'),
    (35, 'girl', 14, 'people', 'train', 'test'),
    (36, 'hamster', 16, 'small_mammals', 'train', 'val'),
    (37, 'house', 9, 'large_man-made_outdoor_things', 'train', 'train'),
    (38, 'kangaroo', 11, 'large_omnivores_and_herbivores', 'train', 'val'),
    (39, 'keyboard', 5, 'household_electrical_devices', 'train', 'train'),
    (40, 'lamp', 5, 'household_electrical_devices', 'val', 'train'),
    (41, 'lawn_mower', 19, 'vehicles_2', 'train', 'train'),
    (42, 'leopard', 8, 'large_carnivores', 'test', 'val'),
    (43, 'lion', 8, 'large_carnivores', 'train', 'val'),
    (44, 'lizard', 15, 'reptiles', 'train', 'train'),
    (45, 'lobster', 13, 'non-insect_invertebrates', 'train', 'val'),
    (46, 'man', 14, 'people', 'test', 'test'),
    (47, 'maple_tree', 17, 'trees', 'val', 'train'),
    (48, 'motorcycle', 18, 'vehicles_1', 'val', 'train'),
    (49, 'mountain', 10, 'large_natural_outdoor_scenes', 'train', 'train'),
    (50, 'mouse', 16, 'small_mammals', 'train', 'val'),
    (51, 'mushroom', 4, 'fruit_and_vegetables', 'train', 'train'),
    (52, 'oak_tree', 17, 'trees', 'train', 'train'),
    (53, 'orange', 4, 'fruit_and_vegetables', 'train', 'train'),
    (54, 'orchid', 2, 'flowers', 'train', 'train'),
    (55, 'otter', 0, 'aquatic_mammals', 'val', 'test'),
    (56, 'palm_tree', 17, 'trees', 'train', 'train'),
    (57, 'pear', 4, 'fruit_and_vegetables', 'train', 'train'),
    (58, 'pickup_truck', 18, 'vehicles_1', 'test', 'train'),
    (59, 'pine_tree', 17, 'trees', 'train', 'train'),
    (60, 'plain', 10, 'large_natural_outdoor_scenes', 'test', 'train'),
    (61, 'plate', 3, 'food_containers', 'train', 'train'),
    (62, 'poppy', 2, 'flowers', 'test', 'train'),
    (63, 'porcupine', 12, 'medium_mammals', 'train', 'test'),
    (64, 'possum', 12, 'medium_mammals', 'train', 'test'),
    (65, 'rabbit', 16, 'small_mammals', 'train', 'val'),
    (66, 'raccoon', 12, 'medium_mammals', 'train', 'test'),
    (67, 'ray', 1, 'fish', 'train', 'train'),
    (68, 'road', 9, 'large_man-made_outdoor_things', 'train', 'train'),
    (69, 'rocket', 19, 'vehicles_2', 'test', 'train'),
    (70, 'rose', 2, 'flowers', 'test', 'train'),
    (71, 'sea', 10, 'large_natural_outdoor_scenes', 'val', 'train'),
    (72, 'seal', 0, 'aquatic_mammals', 'train', 'test'),
    (73, 'shark', 1, 'fish', 'val', 'train'),
    (74, 'shrew', 16, 'small_mammals', 'train', 'val'),
    (75, 'skunk', 12, 'medium_mammals', 'train', 'test'),
    (76, 'skyscraper', 9, 'large_man-made_outdoor_things', 'train', 'train'),
    (77, 'snail', 13, 'non-insect_invertebrates', 'test', 'val'),
    (78, 'snake', 15, 'reptiles', 'train', 'train'),
    (79, 'spider', 13, 'non-insect_invertebrates', 'train', 'val'),
    (80, 'squirrel', 16, 'small_mammals', 'train', 'val'),
    (81, 'streetcar', 19, 'vehicles_2', 'train', 'train'),
    (82, 'sunflower', 2, 'flowers', 'train', 'train'),
    (83, 'sweet_pepper', 4, 'fruit_and_vegetables', 'test', 'train'),
    (84, 'table', 6, 'household_furniture', 'test', 'train'),
    (85, 'tank', 19, 'vehicles_2', 'train', 'train'),
    (86, 'telephone', 5, 'household_electrical_devices', 'test', 'train'),
    (87, 'television', 5, 'household_electrical_devices', 'val', 'train'),
    (88, 'tiger', 8, 'large_carnivores', 'train', 'val'),
    (89, 'tractor', 19, 'vehicles_2', 'val', 'train'),
    (90, 'train', 18, 'vehicles_1', 'train', 'train'),
    (91, 'trout', 1, 'fish', 'train', 'train'),
    (92, 'tulip', 2, 'flowers', 'train', 'train'),
    (93, 'turtle', 15, 'reptiles', 'train', 'train'),
    (94, 'wardrobe', 6, 'household_furniture', 'test', 'train'),
    (95, 'whale', 0, 'aquatic_mammals', 'test', 'test'),
    (96, 'willow_tree', 17, 'trees', 'train', 'train'),
    (97, 'wolf', 8, 'large_carnivores', 'train', 'val'),
    (98, 'woman', 14, 'people', 'test', 'test'),
    (99, 'worm', 13, 'non-insect_invertebrates', 'test', 'val'),
)

SPLIT_COLUMNS = {"cifar_fs": "cifar_fs_split", "fc100": "fc100_split"}
EXPECTED_COUNTS = {"cifar_fs": {"train": 64, "val": 16, "test": 20}, "fc100": {"train": 60, "val": 20, "test": 20}}


def classes_csv() -> str:
    """``classes.csv`` as in ``../shared/datasets/cifar_fs`` (header + 100 rows, ``\\n`` line ends)."""
    return "".join(",".join(map(str, row)) + "\n" for row in (COLUMNS, *CLASSES))
