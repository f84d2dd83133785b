import OTel
import Tracing
