"""What a frame of a REACT stream holds (FaceVerse 3DMM columns, emotion columns) and its clock (fps, audio rate,
clip length). The FaceVerse model file itself (meshes) is render/faceverse.py."""

# FaceVerse v2 expression coefficients are ARKit blendshapes; FaceVerse stores them sorted by name
# (its model file's `exp_name_list`), which is the order used by the REACT 3D_FV_files.
EXP_NAMES = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
    "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
EXP = {name: i for i, name in enumerate(EXP_NAMES)}

N_EXP = 52
FV_DIM = 58  # [exp 52 | rot xyz 3 | trans xyz 3]
EXP_SLICE = slice(0, 52)
ROT_SLICE = slice(52, 55)
TRANS_SLICE = slice(55, 58)
POSE_SLICE = slice(52, 58)
STREAM_GROUPS = {"expression": EXP_SLICE, "rotation": ROT_SLICE, "translation": TRANS_SLICE}  # the 58-d's groups
# head rotation's channels (FaceVerse rot x / y / z): nods are pitch, head shakes yaw, tilts roll
HEAD_ROTATION = {"pitch": slice(52, 53), "yaw": slice(53, 54), "roll": slice(54, 55)}
STREAMS = {**STREAM_GROUPS, **HEAD_ROTATION}  # what a loss band may weight: a stream group or one head-rotation channel

# REACT Emotion/<clip>.csv: 15 AU activations, valence, arousal, 8 facial-expression probabilities.
AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24", "AU25",
            "AU26")
EXPRESSION_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
EMOTION_COLUMNS = AU_NAMES + ("valence", "arousal") + EXPRESSION_NAMES
EMOTION_DIM = 25
AU_SLICE = slice(0, 15)
VA_SLICE = slice(15, 17)
EXPRESSION_SLICE = slice(17, 25)

FPS = 25
CLIP_FRAMES = 751  # frames per REACT clip (~30 s)
EVAL_FRAMES = 750  # the REACT protocol scores frames 0..749
SOURCE_AUDIO_RATE = 44100
AUDIO_RATE = 16000  # what shards store and audio frontends consume
SAMPLES_PER_FRAME = AUDIO_RATE // FPS  # 640

assert len(EXP_NAMES) == N_EXP and len(EMOTION_COLUMNS) == EMOTION_DIM
