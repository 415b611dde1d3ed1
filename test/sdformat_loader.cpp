// Loads SDF worlds and URDF robots with libsdformat, the library Gazebo loads them with, and
// prints what it understood as one JSON object per file (errors, models, links, joints, sensors).
// Warnings and unrecognized elements count as errors: a file Gazebo would complain about fails.
// Built and run by test/test_gazebo_parsers.py.
#include <sdf/sdf.hh>

#include <iostream>
#include <sstream>
#include <string>

namespace {

std::string quoted(const std::string &text) {
  std::ostringstream out;
  out << '"';
  for (char c : text) {
    if (c == '"' || c == '\\') out << '\\' << c;
    else if (c == '\n') out << "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) out << ' ';
    else out << c;
  }
  out << '"';
  return out.str();
}

std::string pose(const ignition::math::Pose3d &p) {
  std::ostringstream out;
  out.precision(9);
  out << '[' << p.Pos().X() << ',' << p.Pos().Y() << ',' << p.Pos().Z() << ',' << p.Rot().Roll() << ','
      << p.Rot().Pitch() << ',' << p.Rot().Yaw() << ']';
  return out.str();
}

std::string number(double value) {
  if (!std::isfinite(value)) return value > 0 ? "1e308" : "-1e308";
  std::ostringstream out;
  out.precision(9);
  out << value;
  return out.str();
}

void printModel(const sdf::Model &model, std::ostream &out) {
  out << "{\"name\":" << quoted(model.Name()) << ",\"static\":" << (model.Static() ? "true" : "false")
      << ",\"pose\":" << pose(model.RawPose()) << ",\"links\":[";
  for (uint64_t i = 0; i < model.LinkCount(); ++i) {
    const sdf::Link *link = model.LinkByIndex(i);
    bool gravity = true;
    if (link->Element() && link->Element()->HasElement("gravity"))
      gravity = link->Element()->Get<bool>("gravity");
    out << (i ? "," : "") << "{\"name\":" << quoted(link->Name()) << ",\"mass\":"
        << number(link->Inertial().MassMatrix().Mass()) << ",\"gravity\":" << (gravity ? "true" : "false")
        << ",\"collisions\":" << link->CollisionCount() << ",\"visuals\":" << link->VisualCount()
        << ",\"sensors\":[";
    for (uint64_t s = 0; s < link->SensorCount(); ++s) {
      const sdf::Sensor *sensor = link->SensorByIndex(s);
      out << (s ? "," : "") << "{\"name\":" << quoted(sensor->Name()) << ",\"type\":" << quoted(sensor->TypeStr())
          << ",\"topic\":" << quoted(sensor->Topic()) << ",\"rate\":" << number(sensor->UpdateRate());
      if (const sdf::Camera *camera = sensor->CameraSensor()) {
        out << ",\"width\":" << camera->ImageWidth() << ",\"height\":" << camera->ImageHeight()
            << ",\"hfov\":" << number(camera->HorizontalFov().Radian());
      }
      out << '}';
    }
    out << "]}";
  }
  out << "],\"joints\":[";
  for (uint64_t j = 0; j < model.JointCount(); ++j) {
    const sdf::Joint *joint = model.JointByIndex(j);
    out << (j ? "," : "") << "{\"name\":" << quoted(joint->Name()) << ",\"parent\":"
        << quoted(joint->ParentLinkName()) << ",\"child\":" << quoted(joint->ChildLinkName())
        << ",\"type\":" << static_cast<int>(joint->Type());
    if (const sdf::JointAxis *axis = joint->Axis(0)) {
      out << ",\"lower\":" << number(axis->Lower()) << ",\"upper\":" << number(axis->Upper())
          << ",\"velocity\":" << number(axis->MaxVelocity()) << ",\"effort\":" << number(axis->Effort());
    }
    out << '}';
  }
  out << "]}";
}

}  // namespace

int main(int argc, char **argv) {
  int failed = 0;
  for (int i = 1; i < argc; ++i) {
    sdf::ParserConfig config;
    config.SetWarningsPolicy(sdf::EnforcementPolicy::ERR);
    config.SetUnrecognizedElementsPolicy(sdf::EnforcementPolicy::ERR);
    sdf::Root root;
    const sdf::Errors errors = root.Load(argv[i], config);
    failed += errors.empty() ? 0 : 1;
    std::ostringstream out;
    out << "{\"file\":" << quoted(argv[i]) << ",\"errors\":[";
    for (size_t e = 0; e < errors.size(); ++e) {
      std::ostringstream message;
      message << errors[e];
      out << (e ? "," : "") << quoted(message.str());
    }
    out << "],\"worlds\":[";
    for (uint64_t w = 0; w < root.WorldCount(); ++w) {
      const sdf::World *world = root.WorldByIndex(w);
      out << (w ? "," : "") << "{\"name\":" << quoted(world->Name()) << ",\"lights\":" << world->LightCount()
          << ",\"models\":[";
      for (uint64_t m = 0; m < world->ModelCount(); ++m) {
        out << (m ? "," : "");
        printModel(*world->ModelByIndex(m), out);
      }
      out << "]}";
    }
    out << "],\"model\":";
    if (root.Model()) printModel(*root.Model(), out);
    else out << "null";
    out << "}";
    std::cout << out.str() << std::endl;
  }
  return failed ? 1 : 0;
}
